"""Test-run parameters for the notebooks: small and offline (a learner's Jupyter session ignores this file).

nbval starts each notebook's kernel from this process, so the variables below reach the notebooks'
parameters cells (``cbir_tutorial.parameters.notebook_parameters`` reads ``CBIR_NB_<NAME>``).
"""

import os
from cbir_tutorial.data.loaders import CHECKOUT_SAMPLE as SAMPLE  # ../shared/data/fashion-sample

TEST_RUN = {
    "CBIR_TUTORIAL_DATA": str(SAMPLE),        # absolute: kernels run from notebooks/
    "CBIR_NB_CATALOGUE": "sample",
    "CBIR_NB_WEIGHTS": "random",              # Keras ImageNet downloads are impossible offline
    "CBIR_NB_BACKBONE": "efficientnet_lite0",  # offline ImageNet weights where results must mean something
    "CBIR_NB_N_IMAGES_BACKBONES": "150",      # VGG16 and Xception with random weights are slow on 2 cores
    "CBIR_NB_GALLERY_ROWS": "10000",          # 09: a synthetic gallery small enough for CI
    "CBIR_NB_GALLERY_DIM": "512",
    "CBIR_NB_N_QUERIES": "20",
    "TF_CPP_MIN_LOG_LEVEL": "2",
    "MPLBACKEND": "Agg",
}
for name, value in TEST_RUN.items():
    os.environ.setdefault(name, value)
