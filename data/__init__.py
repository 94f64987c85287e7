"""The data sets: fetching them in their published formats, checking them, splitting them (usps.py,
mnist.py, norb.py, cifar10.py, cifar100.py, svhn.py over fetch.py and formats.py), and loading the npz (dataset.py)."""
