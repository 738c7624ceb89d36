# Explicit downloads, for users who are online. No other rule ever downloads anything.


rule download_weights:
    output:
        ALEXNET_WEIGHTS,
    localrule: True
    retries: 2
    log:
        "logs/download_weights.log",
    conda:
        "../../envs/environment.yaml"
    shell:
        "gt-core download-weights --out {output} > {log} 2>&1"
