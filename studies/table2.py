#!/usr/bin/env python
"""Table 2: CelebA's target model attacked by an adversary who trains on FaceScrub (an auxiliary
dataset) instead of CelebA's attack half. For each explainer: ExpMI against no defence and against
GNIME (lambda and NG width fixed, --gnime-seeds GNIME trainings per explainer, trained on
CelebA's target half as usual), plus PredMI; every attacker trains on the maps and logits the target releases for
FaceScrub images and is evaluated on CelebA's evaluation split. Prints our table beside the paper's.

    python studies/table2.py --data-root /data

--data-root holds celeba/ (or celeba_cropped_1000/) and facescrub/ (see docs/datasets.md,
facescrub: face crops, or raw photos with the official bounding-box lists; exclude.txt removes
identities that also appear in CelebA).
"""

from gnime_ray.tune.scripts import common_spec_kwargs, run_script, start_ray, study_parser


def parser():
    p = study_parser(__doc__, study="table2", num_samples=1, attack_seeds=3, gnime_seeds=2, search=False,
                     preset="paper")
    p.add_argument("--explainers", default="grad,gradcam,lrp", help="comma-separated explainers")
    p.add_argument("--lambda", dest="lam", type=float, default=500.0, help="GNIME's lambda (the paper's CelebA value)")
    p.add_argument("--width", type=float, default=1.0, help="NG width relative to the release")
    return p


def main() -> int:
    args = parser().parse_args()
    import pyarrow as pa

    from gnime_ray import GnimeRayError
    from gnime_ray.data.celeba import find_layout
    from gnime_ray.store import paper_table, table1
    from gnime_ray.tune import StudySpec, run_study

    find_layout(args.data_root)  # clear errors before Ray starts
    explainers = tuple(e.strip() for e in args.explainers.split(",") if e.strip())
    spec = StudySpec(name=args.study, dataset="celeba", aux_dataset="facescrub", explainers=explainers,
                     search="grid", lam_range=(args.lam, args.lam), widths=(args.width,), defenses=("gnime",),
                     gnime_seeds=tuple(range(args.gnime_seeds)),
                     **{**common_spec_kwargs(args, "celeba"), "num_samples": 1})
    spec = start_ray(args, spec)
    result = run_study(spec)
    print(f"\n{table1(pa.Table.from_pylist(result['rows']), 'celeba', explainers, aux='facescrub')}\n")
    try:
        print(paper_table("celeba", explainers, aux="facescrub"))
    except GnimeRayError as exc:
        print(f"({exc})")
    print(f"\nParquet rows under {spec.out} (study {spec.name})")
    return 0


if __name__ == "__main__":
    run_script(main)
