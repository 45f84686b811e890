"""utils/torch_startup.py: torch imported without its meta registrations and torch.export computes
the same, and whatever needs them (compile, export, fake tensors, decompositions) still gets them."""
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]


def run(code):
    """Run ``code`` in a fresh interpreter whose first torch import is the deferred one."""
    prelude = ("import sys\nsys.path.insert(0, %r)\nfrom utils.torch_startup import import_torch_without_compiler, "
               "deferred_modules\ntorch = import_torch_without_compiler()\n" % str(ROOT))
    proc = subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


# conv, relu, max pooling, log-softmax from a seeded generator (which needs the metaclass
# torch._prims.rng_prims gives torch.Generator); run in a fresh interpreter and in this one
EAGER = """
import torch.nn.functional as F
gen = torch.Generator().manual_seed(7)
x = torch.randn(16, 1, 100, 13, generator=gen)
conv = torch.nn.Conv2d(1, 8, 3)
with torch.no_grad():
    conv.weight.copy_(torch.randn(conv.weight.shape, generator=gen))
    conv.bias.copy_(torch.randn(conv.bias.shape, generator=gen))
    y = F.log_softmax(F.max_pool2d(F.relu(conv(x)), 2).flatten(1), dim=1)
"""


def test_eager_results_equal_and_modules_deferred(tmp_path):
    out = tmp_path / "y.npy"
    printed = run(EAGER + f"""
import numpy as np
np.save({str(out)!r}, y.numpy())
print(deferred_modules(), "torch._prims" in sys.modules)
""")
    assert printed.strip() == "['torch.export', 'torch._meta_registrations'] False"
    here = {"torch": torch}
    exec(EAGER, here)
    np.testing.assert_array_equal(np.load(out), here["y"].numpy())


def test_compile_export_and_decompositions_still_work():
    printed = run("""
        import torch._decomp                          # first import of the cycle: meta registrations first
        print(deferred_modules())
        f = torch.compile(lambda a: torch.nn.functional.max_pool2d(a, 2).sum(), backend="aot_eager")
        x = torch.arange(16.0).reshape(1, 1, 4, 4)
        print(float(f(x)), float(torch.nn.functional.max_pool2d(x, 2).sum()))
        print(callable(torch.export.export), deferred_modules())
        print(torch.empty(2, 3, device="meta").sum(0).shape)
        from torch._library.opaque_object import is_opaque_type
        print(is_opaque_type(torch.Generator))   # what torch._prims.rng_prims registers for the compiler
    """).splitlines()
    assert printed[0] == "['torch.export']"      # decompositions loaded the meta registrations
    assert printed[1] == "40.0 40.0"              # maxima 5, 7, 13, 15
    assert printed[2] == "True []"
    assert printed[3] == "torch.Size([3])"
    assert printed[4] == "True"


def test_attribute_use_loads_the_placeholders():
    printed = run("""
        print(callable(torch._meta_registrations.activate_meta), deferred_modules())
        ep = torch.export.export(torch.nn.Linear(3, 2), (torch.ones(1, 3),))
        print(type(ep).__name__, type(torch.export).__name__, deferred_modules())
    """).splitlines()
    assert printed == ["True ['torch.export']", "ExportedProgram module []"]


def test_already_imported_torch_is_returned_as_is():
    from utils.torch_startup import import_torch_without_compiler
    assert import_torch_without_compiler() is torch


def test_evaluation_scripts_import_torch_through_it_first():
    for script in ("train.py", "test.py", "profile.py", "quantize.py", "prune.py", "predict.py"):
        lines = (ROOT / script).read_text().splitlines()
        call = lines.index("import_torch_without_compiler()  # before anything imports torch: leaves out what "
                           "only torch.compile needs")
        first_import_of_ours = min(i for i, line in enumerate(lines)
                                   if line.startswith(("from app", "from utils.cli", "from utils.errors", "from parse_config")))
        assert call < first_import_of_ours, script
