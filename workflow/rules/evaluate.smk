# Metrics per cell, for every evaluation protocol (head, face, full where supported).


rule evaluate:
    input:
        cell="results/{subject}/{duration}/cell/cell.json",
        renders="results/{subject}/{duration}/{method}/renders.npz",
        train="results/{subject}/{duration}/{method}/train.json",
        lpips_weights=lpips_weights,
    output:
        metrics="results/{subject}/{duration}/{method}/metrics.json",
        frames="results/{subject}/{duration}/{method}/metrics_frames.csv",
    log:
        "logs/{subject}/{duration}/{method}/evaluate.log",
    benchmark:
        "results/{subject}/{duration}/{method}/evaluate_benchmark.tsv"
    threads: MODEL_THREADS
    conda:
        "../../envs/environment.yaml"
    shell:
        "gt-core evaluate --cell results/{wildcards.subject}/{wildcards.duration}/cell --renders {input.renders} "
        "--train {input.train} --out results/{wildcards.subject}/{wildcards.duration}/{wildcards.method} > {log} 2>&1"
