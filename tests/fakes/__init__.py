"""Test doubles with teeth for the AWS edge."""
