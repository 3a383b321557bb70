#!/usr/bin/env python
"""The CelebA lambda x NG width search (Optuna through Ray Tune) at fixed perturbation budgets, the
paper's protocol: each trial's GNIME attacked by ExpMI at 0.5, 1 and 2 times the paper's Table 3
perturbation (--budgets; or, with --budgets '', gamma searched too), two objectives (attack SSIM
down, utility up, the utility floor a constraint) on the selection images, LRP by default; then
the held-out frontier of each explainer's Pareto-optimal trials (--gnime-seeds GNIMEs
trained afresh at each, fresh attack seeds, RND and OND at GNIME's perturbation and at its
utility, the baselines, 95% intervals, all on the test images, beside the paper's numbers);
results as Parquet under --out.

    ray up cluster.yaml
    ray submit cluster.yaml studies/celeba_lambda.py -- --data-root /data/gnime --out s3://BUCKET/gnime

--data-root holds celeba/ (the official release: img_align_celeba/, identity_CelebA.txt) or
celeba_cropped_1000/ (the authors' cropped folders); see docs/datasets.md, celeba.
"""

from gnime_ray.tune.scripts import (common_spec_kwargs, print_reports, print_trials, run_script, start_ray,
                                    study_parser)


def parser():
    p = study_parser(__doc__, study="celeba_lambda", num_samples=24, attack_seeds=3, gnime_seeds=2, front_points=3,
                     preset="paper")
    p.set_defaults(budgets=(0.5, 1.0, 2.0), utility_floor=0.6)
    p.add_argument("--explainers", default="lrp", help="comma-separated explainers")
    return p


def main() -> int:
    args = parser().parse_args()
    from gnime_ray.data.celeba import find_layout
    from gnime_ray.tune import StudySpec
    from gnime_ray.tune.heldout import search_and_report

    spec = StudySpec(name=args.study, dataset="celeba",
                     explainers=tuple(e.strip() for e in args.explainers.split(",") if e.strip()),
                     lam_range=(50.0, 5000.0), widths=(0.5, 1.0, 2.0),
                     gamma_range=None if args.budgets else (5e-4, 5e-3), **common_spec_kwargs(args, "celeba"))
    layout, folder = find_layout(args.data_root)  # a clear error before Ray starts when CelebA is not there
    print(f"CelebA: {layout} layout at {folder}", flush=True)
    spec = start_ray(args, spec)
    outcome = search_and_report(spec, args.gnime_seeds, front_points=args.front_points, matches=args.match)
    print_trials(outcome["search"])
    print_reports(outcome, "celeba")
    print(f"\nParquet rows under {outcome['search']['spec'].out} (the search {spec.name} and its reports "
          f"{', '.join(r['spec'].name for r in outcome['reports'].values())}); trials in _trials/{spec.name}.csv")
    return 0


if __name__ == "__main__":
    run_script(main)
