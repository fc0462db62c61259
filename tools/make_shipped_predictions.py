"""Write the shipped models' predictions for the MNIST test set into
capsviewer/resources/predictions (one 10 kB file per model, checked against the checkpoint's
and the data's checksums before the app uses it). Run from the checkout, after a shipped model
changes:

    python tools/make_shipped_predictions.py --data-root ../shared/data
"""

from pathlib import Path

import torch
from make_test_sample import mnist_test_set

from capsviewer.analysis.inspection import predict_all
from capsviewer.analysis.shipped_predictions import write_shipped_predictions
from capsviewer.data import load_sample
from capsviewer.training import load_checkpoint
from capsviewer.training.model_files import SHIPPED_MODELS, find_models


def main() -> None:
    test = mnist_test_set(__doc__)
    sample = load_sample("mnist")
    assert torch.equal(sample.images, test.images[:len(sample)])  # the first test images
    for path in find_models("mnist", [Path(SHIPPED_MODELS)]).values():
        model = load_checkpoint(path).model.eval()
        iterations = getattr(getattr(model, "config", None), "routing_iterations", None)
        with torch.no_grad():  # as the app computes them (batches of 100, fp32)
            predicted = predict_all(model, test.images, 100)
        written = write_shipped_predictions(path, predicted, iterations, test.checksum(),
                                            sample.checksum(), len(sample))
        accuracy = (predicted == test.labels.numpy()).mean()
        print(f"wrote {written} ({written.stat().st_size:,} bytes): {path.name}, "
              f"R = {iterations}, test accuracy {accuracy:.2%}")


if __name__ == "__main__":
    main()
