"""Evaluation over an in-memory split: loss and top-1 averaged per sample, plus predictions."""
import torch


def evaluate(model, loader, criterion, device="cpu", metrics=()):
    """Returns {'loss', 'top1', <metric names>, 'n', 'loss_weight', 'predictions', 'targets'}:
    sums over every sample divided by the number of samples (not a mean of batch means). With a
    class-weighted criterion the loss is sum(w * nll) / sum(w) over the whole split, whatever the
    batching; 'loss_weight' is that denominator, for summing over distributed ranks."""
    from model.metric import ties, top1
    model.eval()
    loss_sum, weight_sum, correct, n, tied = 0.0, 0.0, 0.0, 0, 0
    weight = getattr(criterion, "keywords", {}).get("weight")
    extra = {m.__name__: 0 for m in metrics if m.__name__ != "top1"}
    preds, targets = [], []
    with torch.no_grad():
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            out = model(x)
            loss_sum += float(criterion(out, y, reduction="sum"))
            weight_sum += float(weight.to(y.device)[y].sum()) if weight is not None else len(y)
            correct += top1(out, y)
            tied += ties(out)
            for m in metrics:
                if m.__name__ in extra:
                    extra[m.__name__] += m(out, y)
            n += len(y)
            preds.append(out.argmax(1).cpu())
            targets.append(y.cpu())
    result = {"loss": loss_sum / max(weight_sum, 1e-12), "top1": correct / max(n, 1), "n": n,
              "loss_weight": weight_sum, "ties": tied}
    result.update({k: v / max(n, 1) for k, v in extra.items()})
    result["predictions"] = torch.cat(preds) if preds else torch.zeros(0, dtype=torch.long)
    result["targets"] = torch.cat(targets) if targets else torch.zeros(0, dtype=torch.long)
    return result
