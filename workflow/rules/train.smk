# Train each method on each cell, then render the cell's test frames (head protocol).


rule train:
    input:
        cell="results/{subject}/{duration}/cell/cell.json",
        weights=method_weight_files,
        extra=method_cell_inputs,
    output:
        "results/{subject}/{duration}/{method}/train.json",
    wildcard_constraints:
        method=RENDERING_RE,
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
        extra=method_cell_inputs,
    output:
        "results/{subject}/{duration}/{method}/renders.npz",
    wildcard_constraints:
        method=RENDERING_RE,
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


rule derive:
    input:
        cell="results/{subject}/{duration}/cell/cell.json",
        train=derived_source("train.json"),
        renders=derived_source("renders.npz"),
    output:
        train="results/{subject}/{duration}/{method}/train.json",
        renders="results/{subject}/{duration}/{method}/renders.npz",
    wildcard_constraints:
        method=DERIVED_RE,
    params:
        preset=config["preset"],
        hyper=method_params_json,
    log:
        "logs/{subject}/{duration}/{method}/derive.log",
    conda:
        "../../envs/environment.yaml"
    shell:
        "gt-core derive --cell results/{wildcards.subject}/{wildcards.duration}/cell --method {wildcards.method} "
        "--source-train {input.train} --source-renders {input.renders} --preset {params.preset} "
        "--params '{params.hyper}' "
        "--out results/{wildcards.subject}/{wildcards.duration}/{wildcards.method} > {log} 2>&1"


rule ave:
    input:
        cell="results/{subject}/{duration}/cell/cell.json",
        wav="results/{subject}/data/audio.wav",
        frames="results/{subject}/data/frames.npy",
        landmarks="results/{subject}/data/landmarks.npz",
        weights=ave_weight_files,
    output:
        features="results/{subject}/{duration}/ave/features.npy",
        info="results/{subject}/{duration}/ave/ave.json",
        model="results/{subject}/{duration}/ave/ave.pt",
    params:
        preset=config["preset"],
        seed=config["seed"],
        weights=ave_weights_arg,
    log:
        "logs/{subject}/{duration}/ave.log",
    benchmark:
        "results/{subject}/{duration}/ave/ave_benchmark.tsv"
    threads: MODEL_THREADS
    conda:
        "../../envs/environment.yaml"
    shell:
        "gt-core ave --cell results/{wildcards.subject}/{wildcards.duration}/cell "
        "--out results/{wildcards.subject}/{wildcards.duration}/ave --preset {params.preset} --seed {params.seed} "
        "{params.weights} > {log} 2>&1"
