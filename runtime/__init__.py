"""The runtime every binary shares: launch, process start-up, the device mesh, model artifacts.

    launch.py     re-executes a binary once with glibc's huge-page malloc setting
    process.py    joins the multi-host runtime, the compilation cache, TensorFlow off the
                  accelerators, quiet orbax logs
    mesh.py       the 'data' mesh axis and the batch sharding over it
    artifacts.py  model variables + model.json: exported models and training workdirs
    figures.py    headless matplotlib PNGs written atomically

Nothing here imports the model, the input pipeline, training or evaluation.
"""
