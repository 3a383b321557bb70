#!/usr/bin/env python
"""The CelebA lambda x NG width x gamma search (Optuna through Ray Tune), LRP by default, each trial
attacked by ExpMI against GNIME at its gamma and chosen on the selection images; then the held-out
report of each explainer's chosen trial (--final-gnime-seeds GNIMEs at its configuration, fresh
attack seeds, RND and OND at its perturbation, the baselines, all on the test images: the table
printed beside the paper's); results as Parquet under --out.

    ray up cluster.yaml
    ray submit cluster.yaml studies/celeba_lambda.py -- --data-root /data/gnime --preset paper --out s3://BUCKET/gnime

--data-root holds celeba/ (the official release: img_align_celeba/, identity_CelebA.txt) or
celeba_cropped_1000/ (the authors' cropped folders); see docs/datasets.md, celeba.
"""

from gnime_ray.tune.scripts import (common_spec_kwargs, print_reports, print_trials, run_script, start_ray,
                                    study_parser)


def main() -> int:
    p = study_parser(__doc__, name="celeba_lambda", num_samples=24, seeds=3, final_gnime_seeds=2)
    p.add_argument("--explainers", default="lrp", help="comma-separated explainers")
    p.add_argument("--multi-objective", action="store_true", help="search attack SSIM down and utility up together")
    args = p.parse_args()
    from gnime_ray.data.celeba import find_layout
    from gnime_ray.tune import StudySpec
    from gnime_ray.tune.heldout import search_and_report

    spec = StudySpec(name=args.name, dataset="celeba",
                     explainers=tuple(e.strip() for e in args.explainers.split(",") if e.strip()),
                     lam_range=(50.0, 5000.0), widths=(0.5, 1.0, 2.0), gamma_range=(5e-4, 5e-3),
                     objective="multi" if args.multi_objective else "single",
                     **common_spec_kwargs(args, "celeba"))
    layout, folder = find_layout(args.data_root)  # a clear error before Ray starts when CelebA is not there
    print(f"CelebA: {layout} layout at {folder}", flush=True)
    spec = start_ray(args, spec)
    outcome = search_and_report(spec, args.final_gnime_seeds)
    print_trials(outcome["search"])
    print_reports(outcome, "celeba")
    print(f"\nParquet rows under {outcome['search']['spec'].out} (the search {spec.name} and its reports "
          f"{', '.join(r['spec'].name for r in outcome['reports'].values())}); trials in _trials/{spec.name}.csv")
    return 0


if __name__ == "__main__":
    run_script(main)
