"""Dynamics models: ADM (any-step GRU), probabilistic ensemble, bootstrapping RNN."""
