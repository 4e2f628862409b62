"""Samplers: the MSuNAS step on arrays and the Optuna sampler that runs it inside a study.

A layer below configurations and studies: ``optnas.studies.sampling`` builds a sampler from a
search configuration.
"""
