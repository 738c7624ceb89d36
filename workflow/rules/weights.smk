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
        "gt-core download-weights --model alexnet --out {output} > {log} 2>&1"


rule download_vgg16:
    output:
        VGG16_WEIGHTS,
    localrule: True
    retries: 2
    log:
        "logs/download_vgg16.log",
    conda:
        "../../envs/environment.yaml"
    shell:
        "gt-core download-weights --model vgg16 --out {output} > {log} 2>&1"


rule download_deepspeech:
    output:
        DEEPSPEECH_GRAPH,
    localrule: True
    retries: 2
    log:
        "logs/download_deepspeech.log",
    conda:
        "../../envs/environment.yaml"
    shell:
        "gt-core download-weights --model deepspeech --out {output} > {log} 2>&1"


rule download_synctalk_ave:
    output:
        SYNCTALK_AVE_WEIGHTS,
    localrule: True
    retries: 2
    log:
        "logs/download_synctalk_ave.log",
    conda:
        "../../envs/environment.yaml"
    shell:
        "gt-core download-weights --model synctalk-ave --out {output} > {log} 2>&1"
