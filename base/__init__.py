from base.base_model import BaseModel  # noqa: F401
