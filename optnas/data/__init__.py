"""Data: the datasets optnas reads from files the user has (:mod:`~optnas.data.catalog` names
them, :mod:`~optnas.data.datasets` loads them; nothing is downloaded) and the image
corruptions of OOD evaluation (:mod:`~optnas.data.corruptions`)."""
