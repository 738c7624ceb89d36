# Per-subject preprocessing (frames, audio, landmarks, pose, masks, audio features) and the per-cell split.


rule probe:
    input:
        subject_video,
    output:
        "results/{subject}/data/probe.json",
    params:
        video=video_path,
        required=SPLIT.required_seconds(),
        fps=config["fps"],
    log:
        "logs/{subject}/probe.log",
    conda:
        "../../envs/environment.yaml"
    shell:
        "gt-core probe --video {params.video} --out {output} --required-seconds {params.required} "
        "--fps {params.fps} > {log} 2>&1"


rule crop:
    input:
        video=subject_video,
        probe="results/{subject}/data/probe.json",
    output:
        "results/{subject}/data/crop.json",
    params:
        video=video_path,
    log:
        "logs/{subject}/crop.log",
    benchmark:
        "results/{subject}/data/benchmarks/crop.tsv"
    conda:
        "../../envs/environment.yaml"
    shell:
        "gt-core crop --video {params.video} --probe {input.probe} --out {output} > {log} 2>&1"


rule frames:
    input:
        video=subject_video,
        probe="results/{subject}/data/probe.json",
        crop="results/{subject}/data/crop.json",
    output:
        "results/{subject}/data/frames.npy",
    params:
        video=video_path,
        resolution=config["resolution"],
        fps=config["fps"],
    log:
        "logs/{subject}/frames.log",
    benchmark:
        "results/{subject}/data/benchmarks/frames.tsv"
    conda:
        "../../envs/environment.yaml"
    shell:
        "gt-core frames --video {params.video} --probe {input.probe} --crop {input.crop} --out {output} "
        "--resolution {params.resolution} --fps {params.fps} > {log} 2>&1"


rule audio:
    input:
        video=subject_video,
        probe="results/{subject}/data/probe.json",
    output:
        "results/{subject}/data/audio.wav",
    params:
        video=video_path,
    log:
        "logs/{subject}/audio.log",
    conda:
        "../../envs/environment.yaml"
    shell:
        "gt-core audio --video {params.video} --probe {input.probe} --out {output} > {log} 2>&1"


rule landmarks:
    input:
        "results/{subject}/data/frames.npy",
    output:
        landmarks="results/{subject}/data/landmarks.npz",
        eyes="results/{subject}/data/eyes.npy",
    params:
        video=video_path,
        max_missing=config["preprocess"]["max_missing_faces"],
    log:
        "logs/{subject}/landmarks.log",
    benchmark:
        "results/{subject}/data/benchmarks/landmarks.tsv"
    conda:
        "../../envs/environment.yaml"
    shell:
        "gt-core landmarks --frames {input} --out {output.landmarks} --eyes {output.eyes} "
        "--max-missing {params.max_missing} --source {params.video} > {log} 2>&1"


rule pose:
    input:
        "results/{subject}/data/landmarks.npz",
    output:
        pose="results/{subject}/data/pose.npz",
        transforms="results/{subject}/data/transforms.json",
        expression="results/{subject}/data/expression.npy",
    params:
        canonical_frames=round(min(config["durations"]) * config["fps"]),
    log:
        "logs/{subject}/pose.log",
    benchmark:
        "results/{subject}/data/benchmarks/pose.tsv"
    conda:
        "../../envs/environment.yaml"
    shell:
        "gt-core pose --landmarks {input} --out {output.pose} --transforms {output.transforms} "
        "--expression {output.expression} "
        "--canonical-frames {params.canonical_frames} > {log} 2>&1"


rule stabilise:
    input:
        frames="results/{subject}/data/frames.npy",
        landmarks="results/{subject}/data/landmarks.npz",
        pose="results/{subject}/data/pose.npz",
    output:
        pose="results/{subject}/data/pose_stabilised.npz",
        transforms="results/{subject}/data/transforms_stabilised.json",
        stats="results/{subject}/data/pose_stabilised.json",
    params:
        canonical_frames=round(min(config["durations"]) * config["fps"]),
    log:
        "logs/{subject}/stabilise.log",
    benchmark:
        "results/{subject}/data/benchmarks/stabilise.tsv"
    conda:
        "../../envs/environment.yaml"
    shell:
        "gt-core stabilise --frames {input.frames} --landmarks {input.landmarks} --pose {input.pose} "
        "--out {output.pose} --transforms {output.transforms} --stats {output.stats} "
        "--canonical-frames {params.canonical_frames} > {log} 2>&1"


rule masks:
    input:
        frames="results/{subject}/data/frames.npy",
        landmarks="results/{subject}/data/landmarks.npz",
    output:
        "results/{subject}/data/labels.npz",
    log:
        "logs/{subject}/masks.log",
    benchmark:
        "results/{subject}/data/benchmarks/masks.tsv"
    conda:
        "../../envs/environment.yaml"
    shell:
        "gt-core masks --frames {input.frames} --landmarks {input.landmarks} --out {output} > {log} 2>&1"


rule audio_features:
    input:
        wav="results/{subject}/data/audio.wav",
        probe="results/{subject}/data/probe.json",
        model=audio_model_file,
    output:
        "results/{subject}/data/audio_{feature}.npy",
    params:
        model=lambda wildcards, input: f"--model '{input.model}'" if input.model else "",
    threads: audio_threads
    log:
        "logs/{subject}/audio_{feature}.log",
    benchmark:
        "results/{subject}/data/benchmarks/audio_{feature}.tsv"
    conda:
        "../../envs/environment.yaml"
    shell:
        "gt-core audio-features --wav {input.wav} --probe {input.probe} --name {wildcards.feature} "
        "{params.model} --out {output} > {log} 2>&1"


rule cell:
    input:
        frames="results/{subject}/data/frames.npy",
        labels="results/{subject}/data/labels.npz",
        landmarks="results/{subject}/data/landmarks.npz",
        eyes="results/{subject}/data/eyes.npy",
        pose="results/{subject}/data/pose.npz",
        pose_stabilised="results/{subject}/data/pose_stabilised.npz",
        expression="results/{subject}/data/expression.npy",
        audio=f"results/{{subject}}/data/audio_{config['audio_features']}.npy",
    output:
        meta="results/{subject}/{duration}/cell/cell.json",
        plate="results/{subject}/{duration}/cell/plate.png",
        canonical="results/{subject}/{duration}/cell/canonical.npy",
        blink="results/{subject}/{duration}/cell/blink.npy",
        expression="results/{subject}/{duration}/cell/expression.npy",
        preview="results/{subject}/{duration}/cell/preview.png",
    params:
        duration=duration_seconds,
        split=json.dumps(
            {
                "durations": list(SPLIT.durations),
                "gap_s": SPLIT.gap_s,
                "test_seconds": SPLIT.test_seconds,
                "mode": SPLIT.mode,
                "fps": SPLIT.fps,
            }
        ),
        feature=config["audio_features"],
    log:
        "logs/{subject}/{duration}/cell.log",
    conda:
        "../../envs/environment.yaml"
    shell:
        "gt-core cell --data results/{wildcards.subject}/data --duration {params.duration} "
        "--out results/{wildcards.subject}/{wildcards.duration}/cell --audio-features {params.feature} "
        "--config '{params.split}' > {log} 2>&1"
