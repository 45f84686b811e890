"""Evaluate a checkpoint on the test split: confusion matrix, per-sample metrics, per-class scores."""
import utils.start_up  # noqa: F401  (before the slow imports: Ctrl-C at start-up is one line, exit 130)
import utils.stdlib_profile  # noqa: F401  (first: keeps our profile.py from shadowing the stdlib's)
import argparse
from app.cli import CPU_DEVICE, NO_STORED, entry, script_parser
from app.stream_test import format_stream_report, run_stream_test, save_stream_report
from app.testing import format_report, report_folder, run_test, save_report
from app.workflow import next_after_evaluation


def parser() -> argparse.ArgumentParser:
    parser = script_parser("Test a trained keyword spotter", resume="checkpoint to test (model_best.pth)",
                           quantization="quantization.yml to apply", pruning="pruning.yml to apply",
                           no_stored=NO_STORED, device=CPU_DEVICE)
    parser.add_argument("--data-dir", default=None, help="evaluate another corpus (its testing_list.txt)")
    parser.add_argument("--all", action="store_true", help="with --data-dir: every clip of the corpus")
    stream = parser.add_argument_group("streaming evaluation (misses against false alarms per hour)")
    stream.add_argument("--stream", nargs="?", const="", default=None, metavar="REC.wav",
                        help="evaluate as a keyword spotter on a long recording: built from --split of the "
                             "corpus, or your own REC.wav with --labels")
    stream.add_argument("--labels", default=None, metavar="REC.txt",
                        help="with --stream REC.wav: one 'start_s word' line per spoken keyword")
    stream.add_argument("--split", default="test", choices=("test", "validation"),
                        help="the split the stream is built from (default test)")
    stream.add_argument("--stream-hours", type=float, default=1.0,
                        help="hours of non-keyword audio in a built stream (default 1; short splits are "
                             "mixed in several variants)")
    stream.add_argument("--stream-seed", type=int, default=0, help="seed of the built stream (default 0)")
    stream.add_argument("--threshold", type=float, default=None,
                        help="detector threshold (default: the checkpoint's calibrated one, else 0.5)")
    stream.add_argument("--target", type=float, default=None,
                        help="false alarms per hour the best threshold is sought for (default: the "
                             "checkpoint's calibration target, else 1)")
    parser.add_argument("-o", "--output", default=None,
                        help="folder for the report (default: beside the checkpoint; the current folder "
                             "when the checkpoint's folder cannot be written)")
    return parser


def run(args: argparse.Namespace) -> None:
    if args.output is not None:
        report_folder(args.output)   # before any work
    if args.stream is not None:
        return stream_main(args)
    print(f"Loading checkpoint: {args.resume} ...")
    result = run_test(args.resume, args.quantization, args.pruning, args.data_dir, args.all,
                      use_stored=not args.no_stored)
    print(f"Evaluated: {result['evaluated']}")
    print(format_report(result))
    if args.data_dir is None:
        report, note = save_report(result, args.resume, args.quantization, args.pruning, args.output)
        if note:
            print(note)
        print(f"Wrote {report} and {report.with_suffix('.png')} (confusion matrix)")
    else:
        print("Nothing written (another corpus: the report beside the checkpoint is for its own test split)")
    print(next_after_evaluation(args.resume, args.quantization, args.pruning))


def stream_main(args: argparse.Namespace) -> None:
    print(f"Loading checkpoint: {args.resume} ...")
    result = run_stream_test(args.resume, args.quantization, args.pruning, not args.no_stored,
                             recording=args.stream or None, labels=args.labels, data_dir=args.data_dir,
                             split=args.split, hours=args.stream_hours, seed=args.stream_seed,
                             threshold=args.threshold, target=args.target)
    report, note = save_stream_report(result, args.resume, args.quantization, args.pruning, args.output)
    if note:
        print(note)
    print(f"Wrote {report} and {report.with_suffix('.png')} (DET curve)")
    print(format_stream_report(result))   # its last line is the stream's summary (the one a script greps)


main = entry(parser, run)

if __name__ == "__main__":
    main()
