"""Training losses of the teacher papers, as pure functions on torch tensors.

Every function takes plain tensors and returns a scalar loss (0-dim tensor) that carries gradients to its inputs.
Shapes are checked and a mismatch raises ``ValueError`` naming the expected layout.

- :func:`ctc_loss`: CTC (Graves et al., ICML 2006), batch-first; the auxiliary ASR objective of Cai et al.
  (Interspeech 2021) and of MMER (Interspeech 2023).
- :func:`supcon_loss`: supervised contrastive loss (Khosla et al., NeurIPS 2020, the ``L_out`` form).
- :func:`instance_contrastive_loss`: InfoNCE between a clip and its augmented view (MMER's augmented contrastive
  learning; van den Oord et al. 2018 / Chen et al. 2020 SimCLR-style, one direction).
- :func:`am_softmax_logits`, :func:`am_softmax_loss`: additive-margin softmax (Wang et al., IEEE SPL 2018;
  GMP-ATL eq. 2-3).
- :func:`kd_loss`: knowledge distillation with temperature (Hinton et al. 2015).
- :func:`masked_prediction_loss`: cross-entropy over masked frames only (HuBERT, Hsu et al. 2021; GMP-ATL's
  frame-level pseudo-label prediction).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100


def _zero_like_loss(*tensors: torch.Tensor) -> torch.Tensor:
    """A 0-dim zero that is still connected to the graph of ``tensors`` (so ``.backward()`` works)."""
    total = tensors[0].sum() * 0.0
    for t in tensors[1:]:
        total = total + t.sum() * 0.0
    return total


def ctc_loss(
    log_probs_btv: torch.Tensor,
    targets: torch.Tensor,
    input_lengths: torch.Tensor,
    target_lengths: torch.Tensor,
    blank: int = 0,
) -> torch.Tensor:
    """Connectionist temporal classification loss on batch-first log-probabilities.

    For one utterance with frame posteriors ``y[t, v]`` and label sequence ``l``:
    ``loss = -log sum_{pi in B^-1(l)} prod_t y[t, pi_t]``, where ``B`` collapses repeats and then removes blanks
    (Graves et al., "Connectionist Temporal Classification", ICML 2006).

    Reduction is PyTorch's ``'mean'``: each utterance's loss is divided by its target length, then averaged over
    the batch. ``zero_infinity=True``: impossible alignments (input shorter than the target needs) give 0 instead of
    ``inf``, so one too-short clip does not poison a batch.

    Args:
        log_probs_btv: ``[B, T, V]`` log-softmax outputs (index ``blank`` is the CTC blank). Computed in float32.
        targets: ``[B, S]`` padded label ids (padding ignored past ``target_lengths``) or the 1-D concatenation.
        input_lengths: ``[B]`` valid frames per utterance.
        target_lengths: ``[B]`` labels per utterance.
        blank: the blank index.
    """
    if log_probs_btv.dim() != 3:
        raise ValueError(f"ctc_loss expects log_probs [B, T, V] (batch first), got shape {tuple(log_probs_btv.shape)}")
    b, t, _ = log_probs_btv.shape
    if input_lengths.shape != (b,) or target_lengths.shape != (b,):
        raise ValueError(
            f"ctc_loss: input_lengths {tuple(input_lengths.shape)} and target_lengths {tuple(target_lengths.shape)} "
            f"must both be [B] = [{b}]"
        )
    if int(input_lengths.max()) > t:
        raise ValueError(f"ctc_loss: an input length ({int(input_lengths.max())}) exceeds the {t} frames of log_probs")
    return F.ctc_loss(
        log_probs_btv.float().transpose(0, 1),
        targets.long(),
        input_lengths.long(),
        target_lengths.long(),
        blank=blank,
        reduction="mean",
        zero_infinity=True,
    )


def supcon_loss(z: torch.Tensor, labels: torch.Tensor, tau: float = 0.1) -> torch.Tensor:
    """Supervised contrastive loss, ``L_out`` form (Khosla et al., "Supervised Contrastive Learning", NeurIPS 2020).

    With ``u_i = z_i / ||z_i||``, ``A(i)`` all samples but ``i`` and ``P(i)`` the samples of ``A(i)`` sharing
    ``i``'s label::

        loss_i = -1/|P(i)| * sum_{p in P(i)} log( exp(u_i.u_p / tau) / sum_{a in A(i)} exp(u_i.u_a / tau) )

    Anchors with no positive in the batch are skipped; the result is the mean of ``loss_i`` over the anchors that
    have positives, or a zero that still carries gradient when none has.

    Args:
        z: ``[B, D]`` embeddings (normalised here).
        labels: ``[B]`` integer class labels.
        tau: temperature.
    """
    if z.dim() != 2:
        raise ValueError(f"supcon_loss expects z [B, D], got shape {tuple(z.shape)}")
    if labels.shape != (z.shape[0],):
        raise ValueError(f"supcon_loss: labels must be [B] = [{z.shape[0]}], got {tuple(labels.shape)}")
    if tau <= 0:
        raise ValueError(f"supcon_loss: tau must be > 0, got {tau}")
    u = F.normalize(z.float(), dim=-1)
    sim = u @ u.T / tau
    eye = torch.eye(z.shape[0], dtype=torch.bool, device=z.device)
    log_den = torch.logsumexp(sim.masked_fill(eye, float("-inf")), dim=1, keepdim=True)
    log_prob = (sim - log_den).masked_fill(eye, 0.0)  # the diagonal is never a positive; keep it finite
    pos = (labels[:, None] == labels[None, :]) & ~eye
    n_pos = pos.sum(1)
    has_pos = n_pos > 0
    if not bool(has_pos.any()):
        return _zero_like_loss(z)
    per_anchor = -(log_prob * pos.to(log_prob.dtype)).sum(1) / n_pos.clamp(min=1).to(log_prob.dtype)
    return per_anchor[has_pos].mean()


def instance_contrastive_loss(z: torch.Tensor, z_aug: torch.Tensor, tau: float = 0.1) -> torch.Tensor:
    """InfoNCE between each clip and its augmented view (MMER's augmented contrastive learning, ACL).

    With ``u = z / ||z||`` and ``v = z_aug / ||z_aug||``, row ``i``'s positive is ``v_i`` and the other views in the
    batch are its negatives::

        loss = -1/B * sum_i log( exp(u_i.v_i / tau) / sum_j exp(u_i.v_j / tau) )

    i.e. cross-entropy of ``logits = u @ v.T / tau`` against ``arange(B)`` (van den Oord et al. 2018, "CPC";
    Chen et al. 2020, "SimCLR"; used by MMER, Ghosh et al., Interspeech 2023).

    Args:
        z: ``[B, D]`` embeddings of the original clips.
        z_aug: ``[B, D]`` embeddings of their augmented views, in the same order.
        tau: temperature.
    """
    if z.dim() != 2 or z.shape != z_aug.shape:
        raise ValueError(
            f"instance_contrastive_loss expects z and z_aug of the same shape [B, D], got {tuple(z.shape)} and "
            f"{tuple(z_aug.shape)}"
        )
    if tau <= 0:
        raise ValueError(f"instance_contrastive_loss: tau must be > 0, got {tau}")
    logits = F.normalize(z.float(), dim=-1) @ F.normalize(z_aug.float(), dim=-1).T / tau
    return F.cross_entropy(logits, torch.arange(z.shape[0], device=z.device))


def am_softmax_logits(
    x: torch.Tensor,
    weight: torch.Tensor,
    labels: torch.Tensor | None = None,
    s: float = 30.0,
    m: float = 0.2,
) -> torch.Tensor:
    """Additive-margin softmax logits (Wang et al., "Additive Margin Softmax for Face Verification", 2018).

    ``cos[i, c] = (x_i / ||x_i||) . (W_c / ||W_c||)``; the logit of class ``c`` is ``s * (cos[i, c] - m)`` when
    ``c == labels[i]`` and ``s * cos[i, c]`` otherwise (GMP-ATL eq. 2-3). Without ``labels`` (inference) every logit
    is ``s * cos``, which ranks classes exactly as the trained objective does.

    Args:
        x: ``[B, D]`` features.
        weight: ``[C, D]`` class weight vectors (one row per class).
        labels: ``[B]`` class indices, or ``None`` for inference logits.
        s: scale.
        m: additive margin.
    """
    if x.dim() != 2 or weight.dim() != 2 or x.shape[1] != weight.shape[1]:
        raise ValueError(
            f"am_softmax expects x [B, D] and weight [C, D] with the same D, got {tuple(x.shape)} and "
            f"{tuple(weight.shape)}"
        )
    cos = F.normalize(x.float(), dim=-1) @ F.normalize(weight.float(), dim=-1).T
    if labels is None:
        return s * cos
    if labels.shape != (x.shape[0],):
        raise ValueError(f"am_softmax: labels must be [B] = [{x.shape[0]}], got {tuple(labels.shape)}")
    margin = F.one_hot(labels.long(), num_classes=weight.shape[0]).to(cos.dtype) * m
    return s * (cos - margin)


def am_softmax_loss(
    x: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor, s: float = 30.0, m: float = 0.2
) -> torch.Tensor:
    """AM-Softmax loss: cross-entropy of :func:`am_softmax_logits` with the margin applied to the target class.

    ``loss = -1/B * sum_i log( e^{s(cos_{i,y_i} - m)} / (e^{s(cos_{i,y_i} - m)} + sum_{c != y_i} e^{s cos_{i,c}}) )``
    (Wang et al. 2018, eq. 6; GMP-ATL eq. 3).
    """
    return F.cross_entropy(am_softmax_logits(x, weight, labels, s=s, m=m), labels.long())


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, T: float = 2.0) -> torch.Tensor:
    """Knowledge-distillation loss (Hinton, Vinyals & Dean, "Distilling the Knowledge in a Neural Network", 2015).

    With ``p = softmax(teacher / T)`` and ``q = softmax(student / T)``::

        loss = T^2 * 1/B * sum_i KL(p_i || q_i) = T^2 * 1/B * sum_i sum_c p_ic (log p_ic - log q_ic)

    The ``T^2`` factor keeps the gradient scale comparable across temperatures. The teacher is treated as a fixed
    target (its logits are detached).

    Args:
        student_logits: ``[B, C]``.
        teacher_logits: ``[B, C]``.
        T: temperature (> 0).
    """
    if student_logits.shape != teacher_logits.shape or student_logits.dim() != 2:
        raise ValueError(
            f"kd_loss expects student and teacher logits of the same shape [B, C], got {tuple(student_logits.shape)} "
            f"and {tuple(teacher_logits.shape)}"
        )
    if T <= 0:
        raise ValueError(f"kd_loss: temperature T must be > 0, got {T}")
    log_q = F.log_softmax(student_logits.float() / T, dim=-1)
    log_p = F.log_softmax(teacher_logits.detach().float() / T, dim=-1)
    return F.kl_div(log_q, log_p, reduction="batchmean", log_target=True) * (T * T)


def masked_prediction_loss(logits_btk: torch.Tensor, targets_bt: torch.Tensor, mask_bt: torch.Tensor) -> torch.Tensor:
    """Cross-entropy over masked frames only (HuBERT's ``L_m``, Hsu et al., IEEE/ACM TASLP 2021).

    ``loss = -1/|M| * sum_{(b, t) in M} log softmax(logits[b, t])[targets[b, t]]`` with ``M`` the frames where
    ``mask_bt`` is True and ``targets_bt != -100``. Returns a zero that still carries gradient when ``M`` is empty.

    Args:
        logits_btk: ``[B, T, K]`` frame logits over ``K`` pseudo-label clusters.
        targets_bt: ``[B, T]`` cluster ids, ``-100`` where there is no target.
        mask_bt: ``[B, T]`` bool, True on the frames that were masked at the input.
    """
    if logits_btk.dim() != 3:
        raise ValueError(f"masked_prediction_loss expects logits [B, T, K], got shape {tuple(logits_btk.shape)}")
    if targets_bt.shape != logits_btk.shape[:2] or mask_bt.shape != logits_btk.shape[:2]:
        raise ValueError(
            f"masked_prediction_loss: targets {tuple(targets_bt.shape)} and mask {tuple(mask_bt.shape)} must both be "
            f"[B, T] = {tuple(logits_btk.shape[:2])}"
        )
    sel = mask_bt.bool() & (targets_bt != IGNORE_INDEX)
    if not bool(sel.any()):
        return _zero_like_loss(logits_btk)
    return F.cross_entropy(logits_btk[sel].float(), targets_bt[sel].long())
