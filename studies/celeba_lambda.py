#!/usr/bin/env python
"""The CelebA lambda x NG width x gamma search (Optuna through Ray Tune), LRP by default, each trial
attacked by ExpMI against GNIME at its gamma; results as Parquet under --out.

    ray up cluster.yaml
    ray submit cluster.yaml studies/celeba_lambda.py -- --data-root /data/celeba --preset paper
"""

from pathlib import Path

from gnime_ray.tune.scripts import common_spec_kwargs, run_script, study_parser

LAYOUTS = ("img_align_celeba/ with identity_CelebA.txt (the official release)",
           "celeba_cropped_1000/<identity>/*.jpg (the authors' cropped layout)")


def main() -> int:
    p = study_parser(__doc__, name="celeba_lambda", num_samples=24, seeds=3)
    p.add_argument("--explainers", default="lrp", help="comma-separated explainers")
    p.add_argument("--multi-objective", action="store_true", help="search attack SSIM down and utility up together")
    args = p.parse_args()
    from gnime_ray import GnimeRayError
    from gnime_ray.data import DATASETS

    root = Path(args.data_root).expanduser() if args.data_root else None
    if root is None or not root.is_dir():
        raise GnimeRayError(f"CelebA not found at {root or '(no --data-root given)'}: pass --data-root DIR holding "
                            f"{' or '.join(LAYOUTS)}")
    if "celeba" not in DATASETS:
        raise GnimeRayError(f"found {root}, but this version of gnime_ray has no CelebA loader yet (it lands with "
                            f"the real-datasets work); the layouts it will read: {'; '.join(LAYOUTS)}")
    from gnime_ray.tune import StudySpec, connect, run_study

    spec = StudySpec(name=args.name, dataset="celeba",
                     explainers=tuple(e.strip() for e in args.explainers.split(",") if e.strip()),
                     lam_range=(50.0, 5000.0), widths=(0.5, 1.0, 2.0), gamma_range=(5e-4, 5e-3),
                     objective="multi" if args.multi_objective else "single", **common_spec_kwargs(args))
    print(connect(args.address, num_cpus=args.num_cpus), flush=True)
    result = run_study(spec)
    for t in sorted(result["trials"], key=lambda t: t["objective"]):
        print(t)
    return 0


if __name__ == "__main__":
    run_script(main)
