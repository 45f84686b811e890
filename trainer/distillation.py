"""Distillation: the loss that mixes the hard labels with the soft targets of a teacher model
(Hinton et al. 2015), and the ensemble of teachers whose averaged distribution it can distil.

Apart from the trainer because it is a loss the trainer is handed (``distillation=``), built by
the training back-end from the config; the epoch loop does not need to know how it is computed.
"""
import torch
import torch.nn.functional as F


class Distillation:
    """Loss = (1 - alpha) * hard-label loss + alpha * T^2 * KL(teacher_T || student_T).

    Both models output log-probabilities; log_softmax(log_p / T) equals log_softmax(logits / T),
    so the softened distributions come straight from them. The KL term of each clip is weighted
    by its class weight, as the hard-label loss is, so rare keywords keep their emphasis."""

    def __init__(self, teacher, temperature, alpha, class_weights=None) -> None:
        self.teacher = teacher.eval()
        for p in self.teacher.parameters():
            p.requires_grad_(False)
        self.temperature = float(temperature)
        self.alpha = float(alpha)
        self.class_weights = class_weights

    def __call__(self, student_out, target, inputs, hard_loss):
        t = self.temperature
        with torch.no_grad():
            teacher_out = self.teacher(inputs)
        kl = F.kl_div(F.log_softmax(student_out / t, dim=1), F.log_softmax(teacher_out / t, dim=1),
                      reduction="none", log_target=True).sum(dim=1)
        if self.class_weights is not None:
            w = self.class_weights.to(target.device)[target]
            soft = (kl * w).sum() / w.sum()
        else:
            soft = kl.mean()
        return (1.0 - self.alpha) * hard_loss + self.alpha * t * t * soft


class Ensemble(torch.nn.Module):
    """Teachers whose softened outputs are averaged: ``forward`` returns
    ``T * log(mean_k softmax(out_k / T))``, so that Distillation's ``log_softmax(out / T)`` of it
    is the log of the averaged distribution at temperature ``T``."""

    def __init__(self, members, temperature) -> None:
        super().__init__()
        self.members = torch.nn.ModuleList(members)
        self.temperature = float(temperature)

    def forward(self, x: torch.Tensor) -> torch.Tensor:

        t = self.temperature
        probs = torch.stack([F.softmax(m(x) / t, dim=1) for m in self.members]).mean(dim=0)
        return t * probs.clamp(min=1e-12).log()
