"""Sample files: the HDF5 format (:mod:`~caloforge.data.io`), making them with Geant4
(:mod:`~caloforge.data.production`) and summarising them (:mod:`~caloforge.data.summary`)."""

from caloforge.data.io import Sample, SampleFileError, iter_batches, open_sample_writer, read_attrs, read_sample

__all__ = ["Sample", "SampleFileError", "iter_batches", "open_sample_writer", "read_attrs", "read_sample"]
