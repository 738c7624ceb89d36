# Inputs: the built-in demo subject, generated from data that packages ship (no downloads).


rule demo_video:
    output:
        video="resources/videos/demo.mp4",
        truth="resources/videos/demo_truth.npz",
    params:
        seed=config["demo"]["seed"],
        duration=config["demo"]["duration_s"],
        size=config["demo"]["size"],
    log:
        "logs/demo_video.log",
    benchmark:
        "benchmarks/out/demo_video.tsv"
    conda:
        "../../envs/environment.yaml"
    shell:
        "gt-core demo --out {output.video} --truth {output.truth} --seed {params.seed} "
        "--duration {params.duration} --size {params.size} > {log} 2>&1"
