#!/usr/bin/env python
"""Digits quickstart, on local Ray (or a running cluster), no dataset download:
1. a small Optuna search over GNIME's lambda, NG width and gamma for LRP, each trial attacked by
   ExpMI (plus ExpMI without defence and PredMI, once);
2. the digits Table 1 row for LRP at the best trial: ExpMI against RND and OND at the best trial's
   lambda, width and gamma (its trained GNIME is reused from the cache, not retrained), beside the
   best trial's own ExpMI-against-GNIME rows and the baselines from step 1;
then prints the trials and the table beside the paper's MNIST numbers."""

import dataclasses

from gnime_ray.tune.scripts import common_spec_kwargs, run_script, start_ray, study_parser


def main() -> int:
    args = study_parser(__doc__, name="quickstart", num_samples=3, seeds=2).parse_args()
    import pyarrow as pa

    from gnime_ray.store import paper_table, table1
    from gnime_ray.tune import StudySpec, run_study

    search = StudySpec(name=args.name, dataset="digits", explainers=("lrp",), lam_range=(5.0, 200.0),
                       widths=(0.5, 1.0), gamma_range=(5e-4, 5e-3), **common_spec_kwargs(args, "digits"))
    search = start_ray(args, search)
    result = run_study(search)
    trials = sorted(result["trials"], key=lambda t: t["objective"])
    if not trials:
        print("no trial finished")
        return 1
    print(f"\ntrials (objective = ExpMI's SSIM against GNIME, penalised below utility {search.utility_floor}):")
    print("| trial | lambda | NG width | gamma | attack SSIM | attack TCA | utility | perturbation MSE | Pareto |")
    print("|---|---|---|---|---|---|---|---|---|")
    for t in trials:
        print(f"| {t['trial']} | {t['lambda']!r} | {t['ng_width']:g} | {t['gamma']!r} | {t['attack_ssim']:.4f} | "
              f"{t['attack_tca']:.4f} | {t['utility']:.4f} | {t['perturbation_mse']:.4f} | {t['pareto']} |")
    best = trials[0]
    row = dataclasses.replace(search, name=f"{args.name}-best", search="grid", lam_range=(best["lambda"],) * 2,
                              widths=(best["ng_width"],), gamma_range=None,
                              gammas=(best["gamma"] if best["gamma"] > 0 else None,),
                              defenses=("rnd", "ond"), baselines=False, num_samples=1)
    rows = run_study(row)["rows"] + [r for r in result["rows"] if r["trial"] in ("baseline", best["trial"])]
    print(f"\nTable 1, digits, LRP, at the best trial {best['trial']} (lambda {best['lambda']!r}, "
          f"width {best['ng_width']!r}, gamma {best['gamma']!r}):\n")
    print(table1(pa.Table.from_pylist(rows), "digits", ["lrp"]))
    print()
    print(paper_table("digits", ["lrp"]))
    print(f"\nParquet rows under {search.out} (studies {search.name} and {row.name}); "
          f"trials in {search.out}/_trials/ (CSV)")
    return 0


if __name__ == "__main__":
    run_script(main)
