"""``python3 -m data_loader.synthetic``: write the synthetic keyword corpus."""
import argparse
import time
from collections.abc import Sequence

from data_loader.synthetic.corpus import generate_corpus, summary_line
from utils.errors import UserError, exit_on_user_error


@exit_on_user_error
def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write the synthetic keyword corpus (not real speech) "
                                                 "in Speech Commands layout.")
    parser.add_argument("--out", default="data/synthetic_kws", help="corpus folder (default %(default)s)")
    parser.add_argument("--clips", type=int, default=4000, help="number of word clips (default %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default %(default)s)")
    parser.add_argument("--keyword-fraction", type=float, default=0.3,
                        help="share of clips saying one/two/three (default %(default)s)")
    parser.add_argument("--sample-rate", type=int, default=16000, help="Hz (default %(default)s)")
    parser.add_argument("--workers", type=int, default=None, help="processes (default 2)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if args.workers is not None and args.workers < 1:
        raise UserError(f"--workers must be at least 1, got {args.workers}")
    t0 = time.time()
    summary = generate_corpus(args.out, n_clips=args.clips, seed=args.seed, sample_rate=args.sample_rate,
                              keyword_fraction=args.keyword_fraction, progress=not args.no_progress,
                              workers=args.workers)
    print(f"{summary_line(summary)} in {time.time() - t0:.1f} s")


if __name__ == "__main__":
    main()
