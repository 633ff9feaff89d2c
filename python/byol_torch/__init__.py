"""byol_torch: continue a byol run in PyTorch (one process, or many under torch.distributed) and hand it back.

Reads and writes byol's whole-learner safetensors (`byol export RUN --format safetensors --whole`), rebuilds byol's
networks with the same function (TensorFlow "SAME" padding where byol pads so), and steps the same learner: the
symmetrized loss, LARS with byol's exclusions, the warm-up + cosine learning rate and the cosine τ from the exported
step, the target EMA. Debian's python3-torch is all it needs.
"""
