"""Converter: target volumes, disk format conversion, KubeVirt VirtualMachine creation."""
