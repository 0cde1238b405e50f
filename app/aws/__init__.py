"""The AWS edge: thin aiobotocore wrappers.  ClientError codes become app.errors here,
raw response dicts become app.domain.model objects here; nothing above sees botocore."""
