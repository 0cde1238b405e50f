"""The AWS edge: thin aiobotocore wrappers.  ClientError codes become app.domain.errors here,
raw response dicts become app.domain.model objects here; nothing above sees botocore."""
