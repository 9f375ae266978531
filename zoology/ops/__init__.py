"""Ops: the kernels the mixers are built from, each beside the plain reference it is tested against.

An op is a function of tensors (or the torch.autograd.Function behind one): no projections, no
parameters, no recurrent-state bookkeeping; those belong to the layers in `zoology.mixers`, which
import ops. Ops know no layers: nothing here imports zoology.mixers or defines a layer. The one
nn.Module here, `feature_maps.TaylorFeatureMap`, has no parameters: it is a module only so that its
constant pair-selection matrices are a buffer that moves (and casts) with the layer that owns it.

A family with several implementations is a folder, `naive.py` (the reference, written for reading)
next to `chunked.py` (the PyTorch training path) next to `triton.py` (fused kernels, CUDA, or the CPU
under TRITON_INTERPRET=1), its `__init__` naming what callers use:

  selective_scan/     h_t = exp(δ_t A) ⊙ h_{t−1} + δ_t B_t x_t, y_t = C_t·h_t (Mamba)
  poly_attention/     causal attention with a polynomial kernel of q·k: the masked l×l form, Based's
                      chunked view, the fused kernels (Based, ReBased)
  linear_attention/   normalised causal linear attention with a feature map φ: quadratic and chunked
                      views, step, final state (ReBased, LinearAttention; Based's state)
  long_conv/          the causal long convolution by FFT (zero-padded to ≥ 2·seq) and its direct sum
                      (Hyena, H3, BaseConv's long layers)
  diagonal_ssm/       a diagonal complex SSM: its materialised kernel and the recurrence (H3)
  dplr/               S_t = diag(e^{g_t}) S_{t−1} + b_t (a_tᵀ S_{t−1}) + k_t v_tᵀ, o_t = scale·S_tᵀ q_t: the step, the
                      loop, the chunked form, adapters to fla-core (DeltaNet, Gated DeltaNet, GLA, Mamba-2, RWKV-7)

and a family with one implementation is a module:

  causal_conv.py      the time-major causal depthwise convolution and its step (Mamba, Mamba-2, the delta rules)
  norms.py            RMSNorm and per-head LayerNorm in float32 (the newer mixers' output norms)
  fla_support.py      optional fla-core: backend choice, lazy import, pinned or tuned autotuning
  additive_pooling.py causal additive (Fastformer-style) pooling over a window or the prefix (LEAP)
  feature_maps.py     every feature map φ and the kernel φ(q)·φ(k) it stands for
  autocast.py         `autocast_off`, for ops that compute in the dtype they are given
  triton_support.py   optional triton: kernels import (and are never launched) where it is missing

The families a mixer's `token_weights` reads also give their causal token-to-token matrix W (y = W·v):
`linear_attention.quadratic_weights` / `weights_on_features`, `poly_attention.taylor_weights`,
`selective_scan.scan_weights`, `dplr.token_weights`, `long_conv.causal_toeplitz` and
`additive_pooling.pooling_weights`.
"""
