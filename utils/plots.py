"""Figures saved next to the YAML results they illustrate (matplotlib, no display needed)."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def confusion_figure(result, n_classes):
    m = np.zeros((n_classes, n_classes), dtype=int)
    for t, p in zip(result["targets"].tolist(), result["predictions"].tolist()):
        m[t, p] += 1
    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.imshow(m / np.maximum(m.sum(1, keepdims=True), 1), cmap="Blues", vmin=0, vmax=1)
    names = list(result["class_names"])
    ax.set_xticks(range(n_classes), names)
    ax.set_yticks(range(n_classes), names)
    ax.set_xlabel("Predicted")
    ax.set_ylabel("True")
    for i in range(n_classes):
        for j in range(n_classes):
            ax.text(j, i, str(m[i, j]), ha="center", va="center", fontsize=9)
    ax.set_title(f"top-1 {result['top1']:.4f}, balanced {result['balanced_accuracy']:.4f}")
    plt.close(fig)
    return fig
