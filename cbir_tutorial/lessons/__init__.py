"""What only the notebooks use: convolution by hand, architecture arithmetic, offline ImageNet class names,
the platform a notebook runs on, notebook parameters, and the original tutorial's score."""
