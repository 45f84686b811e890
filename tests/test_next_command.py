"""The command test.py and profile.py print last: what follows in the chain for the checkpoint
and the solutions they were given."""
import pytest

from app.workflow import next_command


@pytest.mark.parametrize("quantization, pruning, finetuned, expected", [
    (None, None, False, "python3 quantize.py -r R/m.pth"),
    ("R/q.yml", None, False, "python3 prune.py -r R/m.pth -q R/q.yml"),
    (None, "R/p.yml", False, "python3 quantize.py -r R/m.pth -p R/p.yml"),
    ("R/q.yml", "R/p.yml", False, "python3 train.py -r R/m.pth -q R/q.yml -p R/p.yml   (finetunes)"),
    (None, None, True, "python3 export.py -r R/m.pth -o deploy_out"),
    ("R/q.yml", "R/p.yml", True, "python3 export.py -r R/m.pth -o deploy_out"),
])
def test_next_command_follows_the_chain(quantization, pruning, finetuned, expected):
    assert next_command("R/m.pth", quantization, pruning, finetuned) == expected
