"""Train a keyword spotter; resume with -r; finetune a compressed model with -r CKPT -q/-p YML.
Under ``torchrun --nproc_per_node=N train.py ...`` the N processes train data-parallel."""
import utils.start_up  # noqa: F401  (before the slow imports: Ctrl-C at start-up is one line, exit 130)
import utils.stdlib_profile  # noqa: F401  (first: keeps our profile.py from shadowing the stdlib's)
import argparse
from app.cli import entry, script_parser
import collections
import contextlib

from parse_config import ConfigParser
from trainer.distributed import DistributedContext
from trainer.finetuning import finetune_config
from app.training import run_training
from utils.checkpoint import load_checkpoint

CustomArgs = collections.namedtuple("CustomArgs", "flags type target")
OPTIONS = [
    CustomArgs(["--lr", "--learning_rate"], float, "optimizer;args;lr"),
    CustomArgs(["--bs", "--batch_size"], int, "data_loader;args;batch_size"),
    CustomArgs(["--epochs"], int, "trainer;epochs"),
    CustomArgs(["--data-dir"], str, "data_loader;args;data_dir"),
    CustomArgs(["--seed"], int, "seed"),
    CustomArgs(["--name"], str, "name"),
]


def parser() -> argparse.ArgumentParser:
    parser = script_parser("Train a keyword spotter (the architecture the config names), resume a run "
                           "(-r), or finetune a quantized/pruned model (-r CKPT -q/-p YML)", required=(),
                           config="config file (YAML)", resume="checkpoint to resume or finetune",
                           device="indices of GPUs to enable (CUDA_VISIBLE_DEVICES)",
                           quantization="quantization.yml: finetune in fixed point",
                           pruning="pruning.yml: finetune the pruned model")
    helps = {"--lr": "learning rate (optimizer.args.lr; when finetuning, the finetuning rate)",
             "--bs": "batch size (data_loader.args.batch_size)",
             "--epochs": "number of epochs (trainer.epochs; when finetuning, optimization.finetuning.epochs)",
             "--data-dir": "corpus in Speech Commands layout (data_loader.args.data_dir), "
                           "e.g. ../shared/data/kws_corpus",
             "--seed": "random seed of the run (seed)",
             "--name": "run name: runs go to saved/models/<name>/ (name)"}
    for opt in OPTIONS:
        parser.add_argument(*opt.flags, default=None, type=opt.type, help=helps[opt.flags[0]])
    return parser


def run(args: argparse.Namespace) -> None:
    checkpoint = load_checkpoint(args.resume) if args.resume else None
    transform = None
    if checkpoint is not None and (args.quantization or args.pruning):
        transform = lambda config: finetune_config(config, checkpoint, lr=args.lr)[0]  # noqa: E731
    distributed = DistributedContext.from_environment()  # None unless started by torchrun
    with distributed or contextlib.nullcontext():
        config = ConfigParser.from_args(args, OPTIONS, config_from_checkpoint=checkpoint and checkpoint.config,
                                        distributed=distributed, transform=transform)
        with config.discard_on_failure():
            run_training(config, checkpoint, args.quantization, args.pruning, distributed=distributed)


main = entry(parser, run)

if __name__ == "__main__":
    main()
