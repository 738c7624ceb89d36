# Table 1 (+ face protocol, per subject), figures, qualitative grids and side-by-side videos.


rule tables:
    input:
        metrics_targets(),
    output:
        csv=report("reports/table1.csv", caption="../report/table1.rst", category="Table 1"),
        md="reports/table1.md",
        tex="reports/table1.tex",
        long="reports/table1_long.csv",
        face=report("reports/table1_face.csv", caption="../report/table1_face.rst", category="Table 1"),
        face_md="reports/table1_face.md",
        provenance="reports/table1.provenance.json",
        per_subject=directory("reports/per_subject"),
    params:
        methods=METHODS,
        durations=config["durations"],
    log:
        "logs/report/tables.log",
    conda:
        "../../envs/environment.yaml"
    shell:
        "gt-core tables --metrics {input} --out-dir reports --methods {params.methods} "
        "--durations {params.durations} > {log} 2>&1"


rule figure_metrics_vs_duration:
    input:
        metrics_targets(),
    output:
        report(
            "reports/figures/metrics_vs_duration.png",
            caption="../report/metrics_vs_duration.rst",
            category="Figures",
        ),
    params:
        methods=METHODS,
        durations=config["durations"],
    log:
        "logs/report/metrics_vs_duration.log",
    conda:
        "../../envs/environment.yaml"
    shell:
        "gt-core figure --metrics {input} --out {output} --methods {params.methods} "
        "--durations {params.durations} > {log} 2>&1"


rule qualitative:
    input:
        renders=subject_renders,
        cells=subject_cells,
    output:
        png=report(
            "reports/figures/qualitative_{subject}.png",
            caption="../report/qualitative.rst",
            category="Figures",
            subcategory="{subject}",
        ),
        mp4="reports/videos/side_by_side_{subject}.mp4",
    params:
        methods=METHODS,
        durations=config["durations"],
    log:
        "logs/report/qualitative_{subject}.log",
    conda:
        "../../envs/environment.yaml"
    shell:
        "gt-core qualitative --subject {wildcards.subject} --out-png {output.png} --out-mp4 {output.mp4} "
        "--methods {params.methods} --durations {params.durations} > {log} 2>&1"
