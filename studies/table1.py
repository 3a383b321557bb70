#!/usr/bin/env python
"""The Table 1 matrix on Ray: for each dataset and explainer --gnime-seeds GNIMEs at the
paper's lambda (grid mode: nothing is searched or chosen), each attacked by ExpMI against GNIME,
RND and OND, plus ExpMI without defence and PredMI; then Table 1 (the test images; attack-seed and
GNIME-seed spreads) and GNIME's operating points beside the paper's numbers."""

import dataclasses

from gnime_ray.tune.scripts import common_spec_kwargs, run_script, start_ray, study_parser


def parser():
    p = study_parser(__doc__, study="table1", num_samples=1, attack_seeds=5, gnime_seeds=2, search=False)
    p.add_argument("--datasets", default="mnist5k",
                   help="comma-separated datasets (mnist5k and digits need no --data-root)")
    p.add_argument("--explainers", default="grad,gradcam,lrp", help="comma-separated explainers")
    p.add_argument("--lambda", dest="lam", type=float, default=None, help="GNIME's lambda (default: the paper's)")
    return p


def main() -> int:
    args = parser().parse_args()
    import pyarrow as pa

    from gnime_ray.config import default_lambda
    from gnime_ray.store import paper_table, table1
    from gnime_ray.store.report import operating_points
    from gnime_ray.tune import StudySpec, run_study

    explainers = tuple(e.strip() for e in args.explainers.split(",") if e.strip())
    datasets = [d.strip() for d in args.datasets.split(",") if d.strip()]
    specs = []
    for d in datasets:
        lam = args.lam or default_lambda(d)
        specs.append(StudySpec(name=f"{args.study}-{d}", dataset=d, explainers=explainers, search="grid",
                               lam_range=(lam, lam), widths=(1.0,), defenses=("gnime", "rnd", "ond"),
                               gnime_seeds=tuple(range(args.gnime_seeds)),
                               **{**common_spec_kwargs(args, d), "num_samples": 1}))
    decided = start_ray(args, specs[0])  # one GPU decision and concurrency for every dataset's study
    for spec in specs:
        result = run_study(dataclasses.replace(spec, use_gpu=decided.use_gpu,
                                               max_concurrent_trials=decided.max_concurrent_trials))
        rows = pa.Table.from_pylist(result["rows"])
        print(f"\n{table1(rows, spec.dataset, explainers)}\n")
        print(f"{operating_points(rows, spec.dataset, explainers)}\n")
        print(paper_table(spec.dataset, explainers))
    return 0


if __name__ == "__main__":
    run_script(main)
