#!/usr/bin/env python
"""The CelebA lambda x NG width x gamma search (Optuna through Ray Tune), LRP by default, each trial
attacked by ExpMI against GNIME at its gamma; results as Parquet under --out.

    ray up cluster.yaml
    ray submit cluster.yaml studies/celeba_lambda.py -- --data-root /data/gnime --preset paper --out s3://BUCKET/gnime

--data-root holds celeba/ (the official release: img_align_celeba/, identity_CelebA.txt) or
celeba_cropped_1000/ (the authors' cropped folders); see the README's CelebA section.
"""

from gnime_ray.tune.scripts import common_spec_kwargs, run_script, start_ray, study_parser


def main() -> int:
    p = study_parser(__doc__, name="celeba_lambda", num_samples=24, seeds=3)
    p.add_argument("--explainers", default="lrp", help="comma-separated explainers")
    p.add_argument("--multi-objective", action="store_true", help="search attack SSIM down and utility up together")
    args = p.parse_args()
    from gnime_ray.data.celeba import find_layout
    from gnime_ray.tune import StudySpec, run_study

    layout, folder = find_layout(args.data_root)  # a clear error before Ray starts when CelebA is not there
    print(f"CelebA: {layout} layout at {folder}", flush=True)

    spec = StudySpec(name=args.name, dataset="celeba",
                     explainers=tuple(e.strip() for e in args.explainers.split(",") if e.strip()),
                     lam_range=(50.0, 5000.0), widths=(0.5, 1.0, 2.0), gamma_range=(5e-4, 5e-3),
                     objective="multi" if args.multi_objective else "single",
                     **common_spec_kwargs(args, "celeba"))
    spec = start_ray(args, spec)
    result = run_study(spec)
    trials = sorted(result["trials"], key=lambda t: t["objective"])
    print(f"\n{len(trials)} trials (best first; objective = ExpMI's SSIM against GNIME, penalised below utility "
          f"{spec.utility_floor}):")
    print("| explainer | trial | lambda | NG width | gamma | attack SSIM | attack TCA | utility | Pareto |")
    print("|---|---|---|---|---|---|---|---|---|")
    for t in trials:
        print(f"| {t['explainer']} | {t['trial']} | {t['lambda']!r} | {t['ng_width']:g} | {t['gamma']!r} | "
              f"{t['attack_ssim']:.4f} | {t['attack_tca']:.4f} | {t['utility']:.4f} | {t['pareto']} |")
    print(f"\nParquet rows under {spec.out} (study {spec.name}); trials in {spec.out}/_trials/{spec.name}.csv")
    return 0 if trials else 1


if __name__ == "__main__":
    run_script(main)
