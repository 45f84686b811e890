"""Classify WAV files: a clip gets its class probabilities, a longer recording keyword detections."""
import utils.start_up  # noqa: F401  (before the slow imports: Ctrl-C at start-up is one line, exit 130)
import utils.stdlib_profile  # noqa: F401  (first: keeps our profile.py from shadowing the stdlib's)
import argparse
from app.cli import NO_STORED, entry, script_parser
from app.detection import DetectorSettings, format_result, predict_files


def parser() -> argparse.ArgumentParser:
    defaults = DetectorSettings()
    stored = " (default: the checkpoint's calibrated one, else %g)"
    parser = script_parser("Spot keywords in WAV files (any sample rate and length)",
                           resume="checkpoint (model_best.pth or model_compact.pth)",
                           quantization="quantization.yml: simulated fixed point", pruning="pruning.yml to apply",
                           no_stored=NO_STORED)
    parser.add_argument("audio", nargs="+", help="WAV files")
    parser.add_argument("--hop-ms", type=float, default=defaults.hop_ms,
                        help="step of the sliding window over long recordings (default %(default)g)")
    parser.add_argument("--smooth-ms", type=float, default=None,
                        help="span of windows whose probabilities are averaged" + stored % defaults.smooth_ms)
    parser.add_argument("--threshold", type=float, default=None,
                        help="smoothed keyword probability that fires a detection" + stored % defaults.threshold)
    parser.add_argument("--refractory-ms", type=float, default=defaults.refractory_ms,
                        help="minimum time between two detections (default %(default)g)")
    return parser


def run(args: argparse.Namespace) -> None:
    flags = {"hop_ms": args.hop_ms, "smooth_ms": args.smooth_ms, "threshold": args.threshold,
             "refractory_ms": args.refractory_ms}
    classifier, settings, source, results = predict_files(args.resume, args.audio, args.quantization, args.pruning,
                                                          flags, use_stored=not args.no_stored)
    for path, result in results:
        print(format_result(path, result, classifier.class_names, settings, source))


main = entry(parser, run)

if __name__ == "__main__":
    main()
