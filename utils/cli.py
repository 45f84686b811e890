"""Command-line options shared by the scripts."""
import os


def add_device_option(parser, note=""):
    """The lab's ``-d/--device`` (indices of GPUs to enable), on every script it had it on."""
    parser.add_argument("-d", "--device", default=None,
                        help="indices of GPUs to enable (sets CUDA_VISIBLE_DEVICES)" + note)


def use_devices(args):
    """Apply ``-d`` before anything touches CUDA."""
    if getattr(args, "device", None) is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(args.device)
