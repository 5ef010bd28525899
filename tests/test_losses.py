"""train.losses against values worked out by hand (math / numpy), never by the torch op under test."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from train.losses import (
    am_softmax_logits,
    am_softmax_loss,
    ctc_loss,
    instance_contrastive_loss,
    kd_loss,
    masked_prediction_loss,
    supcon_loss,
)


def _unit(v):
    v = np.asarray(v, dtype=np.float64)
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


# ---------------------------------------------------------------------------------------------------------------- CTC


def test_ctc_matches_hand_summed_alignments():
    # Vocabulary: 0 = blank "-", 1 = "a", 2 = "b". Frame posteriors (rows sum to 1).
    # Utterance 1: 2 valid frames (third is padding), target "a".
    p1 = np.array([[0.6, 0.4, 0.0], [0.3, 0.7, 0.0], [1 / 3, 1 / 3, 1 / 3]])
    p1[p1 == 0] = 1e-30
    # Utterance 2: 3 frames, target "ab".
    p2 = np.array([[0.5, 0.3, 0.2], [0.2, 0.5, 0.3], [0.1, 0.2, 0.7]])
    # Utterance 3: 3 frames, target "aa": a repeated label needs a blank in between.
    p3 = np.array([[0.2, 0.6, 0.2], [0.5, 0.4, 0.1], [0.3, 0.6, 0.1]])

    # "a" in 2 frames: a a | a - | - a
    path_sum_1 = p1[0, 1] * p1[1, 1] + p1[0, 1] * p1[1, 0] + p1[0, 0] * p1[1, 1]
    assert math.isclose(path_sum_1, 0.82, rel_tol=1e-9)
    # "ab" in 3 frames: a a b | a b b | a b - | a - b | - a b
    paths_2 = [(1, 1, 2), (1, 2, 2), (1, 2, 0), (1, 0, 2), (0, 1, 2)]
    path_sum_2 = sum(p2[0, a] * p2[1, b] * p2[2, c] for a, b, c in paths_2)
    # "aa" in 3 frames: only a - a
    path_sum_3 = p3[0, 1] * p3[1, 0] * p3[2, 1]
    # PyTorch 'mean': each loss divided by its target length, then averaged over the batch
    expected = (-math.log(path_sum_1) / 1 - math.log(path_sum_2) / 2 - math.log(path_sum_3) / 2) / 3

    log_probs = torch.tensor(np.log(np.stack([p1, p2, p3])), dtype=torch.float32, requires_grad=True)
    targets = torch.tensor([[1, 0], [1, 2], [1, 1]])
    loss = ctc_loss(log_probs, targets, torch.tensor([2, 3, 3]), torch.tensor([1, 2, 2]))
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    loss.backward()
    assert torch.isfinite(log_probs.grad).all()
    assert log_probs.grad[0, 2].abs().sum() == 0  # padding frame gets no gradient


def test_ctc_impossible_alignment_is_zero_not_inf():
    log_probs = torch.log_softmax(torch.randn(1, 2, 3), -1)
    # "aa" needs 3 frames (a - a); with 2 frames there is no valid path
    loss = ctc_loss(log_probs, torch.tensor([[1, 1]]), torch.tensor([2]), torch.tensor([2]))
    assert loss.item() == 0.0


def test_ctc_rejects_time_first_layout():
    with pytest.raises(ValueError, match="batch first"):
        ctc_loss(torch.zeros(4, 3), torch.tensor([[1]]), torch.tensor([4]), torch.tensor([1]))


# ------------------------------------------------------------------------------------------------------------- SupCon


def test_supcon_matches_hand_computation():
    z = np.array([[1.0, 0.0], [0.8, 0.6], [0.0, 2.0], [-1.0, 1.0], [0.5, -0.5]])
    labels = [0, 0, 1, 1, 2]  # sample 4 has no positive: skipped as an anchor, still a negative
    tau = 0.5
    u = _unit(z)
    per_anchor = []
    for i in range(len(z)):
        positives = [p for p in range(len(z)) if p != i and labels[p] == labels[i]]
        if not positives:
            continue
        den = sum(math.exp(u[i] @ u[a] / tau) for a in range(len(z)) if a != i)
        per_anchor.append(-sum(math.log(math.exp(u[i] @ u[p] / tau) / den) for p in positives) / len(positives))
    expected = sum(per_anchor) / len(per_anchor)

    zt = torch.tensor(z, dtype=torch.float32, requires_grad=True)
    loss = supcon_loss(zt, torch.tensor(labels), tau=tau)
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    loss.backward()
    assert torch.isfinite(zt.grad).all() and zt.grad.abs().sum() > 0


def test_supcon_two_positives_per_anchor():
    z = np.array([[1.0, 0.2], [0.9, -0.1], [1.0, 0.5], [-0.3, 1.0]])
    labels = [3, 3, 3, 7]  # anchor 3 has no positive
    u = _unit(z)
    tau = 0.1
    total = 0.0
    for i in range(3):
        den = sum(math.exp(u[i] @ u[a] / tau) for a in range(4) if a != i)
        total += -sum(u[i] @ u[p] / tau - math.log(den) for p in range(3) if p != i) / 2
    loss = supcon_loss(torch.tensor(z, dtype=torch.float32), torch.tensor(labels), tau=tau)
    assert loss.item() == pytest.approx(total / 3, rel=1e-5)


def test_supcon_without_positives_is_zero_with_grad():
    z = torch.randn(3, 4, requires_grad=True)
    loss = supcon_loss(z, torch.tensor([0, 1, 2]))
    assert loss.item() == 0.0
    loss.backward()
    assert z.grad is not None


# ------------------------------------------------------------------------------------------------ instance contrastive


def test_instance_contrastive_two_pairs():
    z = np.array([[1.0, 0.0], [1.0, 1.0]])
    z_aug = np.array([[2.0, 0.5], [0.0, 3.0]])
    tau = 0.2
    u, v = _unit(z), _unit(z_aug)
    expected = 0.0
    for i in range(2):
        logits = [u[i] @ v[j] / tau for j in range(2)]
        expected += -(logits[i] - math.log(sum(math.exp(x) for x in logits)))
    expected /= 2

    zt = torch.tensor(z, dtype=torch.float32, requires_grad=True)
    za = torch.tensor(z_aug, dtype=torch.float32, requires_grad=True)
    loss = instance_contrastive_loss(zt, za, tau=tau)
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    loss.backward()
    assert zt.grad.abs().sum() > 0 and za.grad.abs().sum() > 0


def test_instance_contrastive_shape_error():
    with pytest.raises(ValueError, match="same shape"):
        instance_contrastive_loss(torch.randn(2, 3), torch.randn(3, 3))


# ------------------------------------------------------------------------------------------------------- AM-Softmax


def test_am_softmax_2d_example():
    x = np.array([[3.0, 4.0], [0.0, -2.0]])  # unit: [0.6, 0.8], [0, -1]
    w = np.array([[1.0, 0.0], [1.0, 1.0]])  # unit: [1, 0], [1/sqrt2, 1/sqrt2]
    labels = [0, 1]
    s, m = 30.0, 0.2
    r2 = 1 / math.sqrt(2)
    cos = [[0.6, 0.6 * r2 + 0.8 * r2], [0.0, -r2]]
    logits = [[s * (cos[0][0] - m), s * cos[0][1]], [s * cos[1][0], s * (cos[1][1] - m)]]
    expected = 0.0
    for i, y in enumerate(labels):
        expected += -(logits[i][y] - math.log(sum(math.exp(v) for v in logits[i])))
    expected /= 2

    xt = torch.tensor(x, dtype=torch.float32, requires_grad=True)
    wt = torch.tensor(w, dtype=torch.float32, requires_grad=True)
    out = am_softmax_logits(xt, wt, torch.tensor(labels), s=s, m=m)
    assert np.allclose(out.detach().numpy(), logits, atol=1e-4)
    inference = am_softmax_logits(xt, wt)
    assert np.allclose(inference.detach().numpy(), s * np.array(cos), atol=1e-4)
    loss = am_softmax_loss(xt, wt, torch.tensor(labels), s=s, m=m)
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    loss.backward()
    assert xt.grad.abs().sum() > 0 and wt.grad.abs().sum() > 0


def test_am_softmax_dim_mismatch():
    with pytest.raises(ValueError, match=r"\[C, D\]"):
        am_softmax_logits(torch.randn(2, 3), torch.randn(4, 5))


# ---------------------------------------------------------------------------------------------------------------- KD


def test_kd_two_classes():
    student = [[1.0, 0.0], [0.0, 2.0]]
    teacher = [[0.0, 1.0], [1.0, 3.0]]
    T = 2.0

    def softmax(v):
        e = [math.exp(x / T) for x in v]
        return [x / sum(e) for x in e]

    kl = 0.0
    for s_row, t_row in zip(student, teacher, strict=True):
        p, q = softmax(t_row), softmax(s_row)
        kl += sum(pc * math.log(pc / qc) for pc, qc in zip(p, q, strict=True))
    expected = T * T * kl / 2

    st = torch.tensor(student, requires_grad=True)
    tt = torch.tensor(teacher, requires_grad=True)
    loss = kd_loss(st, tt, T=T)
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    loss.backward()
    assert st.grad.abs().sum() > 0
    assert tt.grad is None  # the teacher is a fixed target
    assert kd_loss(tt, tt, T=T).item() == pytest.approx(0.0, abs=1e-7)


# -------------------------------------------------------------------------------------------------- masked prediction


def test_masked_prediction_only_masked_frames():
    logits = np.array(
        [
            [[2.0, 0.0, -1.0], [0.5, 0.5, 0.5], [9.0, -9.0, 0.0]],
            [[0.0, 1.0, 0.0], [1.0, 2.0, 3.0], [0.0, 0.0, 0.0]],
        ]
    )
    targets = [[0, 2, -100], [1, 2, 0]]
    mask = [[True, False, True], [True, True, False]]
    # counted frames: (0,0) target 0, (1,0) target 1, (1,1) target 2; (0,2) is masked but has no target
    frames = [((0, 0), 0), ((1, 0), 1), ((1, 1), 2)]
    expected = 0.0
    for (b, t), k in frames:
        row = logits[b, t]
        expected += -(row[k] - math.log(sum(math.exp(v) for v in row)))
    expected /= len(frames)

    lt = torch.tensor(logits, dtype=torch.float32, requires_grad=True)
    loss = masked_prediction_loss(lt, torch.tensor(targets), torch.tensor(mask))
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    loss.backward()
    assert lt.grad[0, 1].abs().sum() == 0 and lt.grad[1, 2].abs().sum() == 0  # unmasked frames: no gradient
    assert lt.grad[0, 0].abs().sum() > 0


def test_masked_prediction_empty_mask_is_zero_with_grad():
    logits = torch.randn(2, 3, 4, requires_grad=True)
    loss = masked_prediction_loss(logits, torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, 3, dtype=torch.bool))
    assert loss.item() == 0.0
    loss.backward()
    assert logits.grad is not None


def test_masked_prediction_shape_error():
    with pytest.raises(ValueError, match=r"\[B, T\]"):
        masked_prediction_loss(torch.randn(2, 3, 4), torch.zeros(2, 4, dtype=torch.long), torch.ones(2, 3, dtype=bool))
