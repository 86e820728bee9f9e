"""One thread per numeric library: the settings of test processes that share the cores with others."""

#: Read by TensorFlow when it starts its thread pools, by OpenMP (FAISS, oneDNN) and by the BLAS libraries.
ONE_THREAD_EACH = {"TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1", "OMP_NUM_THREADS": "1",
                   "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
