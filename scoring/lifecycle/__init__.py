"""The model lifecycle: the gate, the registry, where bundles may come from, traffic split, serving
decisions (deploy, rollback, promote) and when to ask for a retrain."""
