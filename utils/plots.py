"""The confusion-matrix PNG test.py writes beside its YAML report.

Drawn with Pillow (already installed with matplotlib), imported when the figure is drawn:
matplotlib's import and renderer cost more than the whole evaluation of a test split, and a grid
of coloured cells with counts needs neither."""
import io
from collections.abc import Mapping
from typing import Any

CELL, MARGIN_LEFT, MARGIN_TOP, MARGIN_BOTTOM = 64, 90, 40, 46


def _colour(share):
    """White to dark blue as ``share`` (of the row) goes from 0 to 1."""
    share = min(max(float(share), 0.0), 1.0)
    light, dark = (247, 251, 255), (8, 48, 107)
    return tuple(round(a + (b - a) * share) for a, b in zip(light, dark))


def confusion_png(result: Mapping[str, Any], n_classes: int) -> bytes:
    """PNG bytes: the confusion matrix of ``result`` (targets, predictions, class_names, top1,
    balanced_accuracy), cells shaded by the share of their row, the count in each cell."""
    from PIL import Image, ImageDraw, ImageFont
    counts = [[0] * n_classes for _ in range(n_classes)]
    for t, p in zip(result["targets"].tolist(), result["predictions"].tolist()):
        counts[t][p] += 1
    width = max(MARGIN_LEFT + CELL * n_classes + 10, 320)
    height = MARGIN_TOP + CELL * n_classes + MARGIN_BOTTOM
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=13)
    names = [str(name) for name in result["class_names"]]
    for i in range(n_classes):
        total = max(sum(counts[i]), 1)
        for j in range(n_classes):
            share = counts[i][j] / total
            x, y = MARGIN_LEFT + j * CELL, MARGIN_TOP + i * CELL
            draw.rectangle((x, y, x + CELL - 1, y + CELL - 1), fill=_colour(share), outline=(200, 200, 200))
            draw.text((x + CELL / 2, y + CELL / 2), str(counts[i][j]), anchor="mm", font=font,
                      fill="white" if share > 0.5 else "black")
        draw.text((MARGIN_LEFT - 6, MARGIN_TOP + i * CELL + CELL / 2), names[i], anchor="rm", font=font, fill="black")
        draw.text((MARGIN_LEFT + i * CELL + CELL / 2, MARGIN_TOP + CELL * n_classes + 6), names[i], anchor="mt",
                  font=font, fill="black")
    draw.text((MARGIN_LEFT, MARGIN_TOP - 8), f"top-1 {result['top1']:.4f}, balanced {result['balanced_accuracy']:.4f}",
              anchor="ls", font=font, fill="black")
    draw.text((MARGIN_LEFT - 6, MARGIN_TOP - 8), "true", anchor="rs", font=font, fill="gray")
    draw.text((MARGIN_LEFT + CELL * n_classes / 2, height - 4), "predicted", anchor="ms", font=font, fill="gray")
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()
