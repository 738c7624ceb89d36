# Train each method on each cell, then render the cell's test frames (head protocol).


rule train:
    input:
        cell="results/{subject}/{duration}/cell/cell.json",
        weights=method_weight_files,
    output:
        "results/{subject}/{duration}/{method}/train.json",
    params:
        preset=config["preset"],
        hyper=method_params_json,
        seed=config["seed"],
        device=config["device"],
        config_hash=CONFIG_HASH,
    log:
        "logs/{subject}/{duration}/{method}/train.log",
    benchmark:
        "results/{subject}/{duration}/{method}/train_benchmark.tsv"
    threads: MODEL_THREADS
    resources:
        gpu=method_gpus,
    conda:
        "../../envs/environment.yaml"
    shell:
        "gt-core train --cell results/{wildcards.subject}/{wildcards.duration}/cell --method {wildcards.method} "
        "--preset {params.preset} --params '{params.hyper}' --out results/{wildcards.subject}/{wildcards.duration}/{wildcards.method} "
        "--device {params.device} --seed {params.seed} --config-hash {params.config_hash} > {log} 2>&1"


rule render:
    input:
        cell="results/{subject}/{duration}/cell/cell.json",
        train="results/{subject}/{duration}/{method}/train.json",
    output:
        "results/{subject}/{duration}/{method}/renders.npz",
    params:
        seed=config["seed"],
        device=config["device"],
    log:
        "logs/{subject}/{duration}/{method}/render.log",
    benchmark:
        "results/{subject}/{duration}/{method}/render_benchmark.tsv"
    threads: MODEL_THREADS
    resources:
        gpu=method_gpus,
    conda:
        "../../envs/environment.yaml"
    shell:
        "gt-core render --cell results/{wildcards.subject}/{wildcards.duration}/cell --train {input.train} "
        "--out {output} --device {params.device} --seed {params.seed} > {log} 2>&1"
