#!/usr/bin/env python
"""Digits quickstart: a small Optuna search over GNIME's lambda, NG width and gamma for LRP, each
trial attacked by ExpMI against GNIME, RND and OND; then the best trials and the digits Table 1
row for LRP at the best trial. Runs on local Ray (or a running cluster), no dataset download."""

from gnime_ray.tune.scripts import common_spec_kwargs, run_script, study_parser


def main() -> int:
    args = study_parser(__doc__, name="quickstart", num_samples=4, seeds=2).parse_args()
    import pyarrow as pa

    from gnime_ray.store import paper_table, table1
    from gnime_ray.tune import StudySpec, connect, run_study

    spec = StudySpec(name=args.name, dataset="digits", explainers=("lrp",), lam_range=(5.0, 200.0),
                     widths=(0.5, 1.0), gamma_range=(5e-4, 5e-3), defenses=("gnime", "rnd", "ond"),
                     **common_spec_kwargs(args))
    print(connect(args.address, num_cpus=args.num_cpus), flush=True)
    result = run_study(spec)
    trials = sorted(result["trials"], key=lambda t: t["objective"])
    print("\nbest trials (objective = attack SSIM against GNIME, penalised below utility "
          f"{spec.utility_floor}):")
    print("| trial | lambda | NG width | gamma | attack SSIM | attack TCA | utility | perturbation MSE | Pareto |")
    print("|---|---|---|---|---|---|---|---|---|")
    for t in trials:
        print(f"| {t['trial']} | {t['lambda']:.1f} | {t['ng_width']:g} | {t['gamma']:.4f} | {t['attack_ssim']:.4f} | "
              f"{t['attack_tca']:.4f} | {t['utility']:.4f} | {t['perturbation_mse']:.4f} | {t['pareto']} |")
    if trials:
        best = trials[0]["trial"]
        rows = [r for r in result["rows"] if r["trial"] in (best, "baseline")]
        print(f"\nTable 1, digits, LRP, best trial {best}:\n")
        print(table1(pa.Table.from_pylist(rows), "digits", ["lrp"]))
        print()
        print(paper_table("digits", ["lrp"]))
    print(f"\n{len(result['rows'])} rows under {spec.out} (study={spec.name})")
    return 0


if __name__ == "__main__":
    run_script(main)
