"""The kit's plumbing: what runs a network without being part of the assignment.

Reading configs and checking their settings, the files a run writes, the display, the
command line and how the process uses the machine. The assignment's own files are at the
top of the kit (layer.py, fc_layer.py, conv_layer.py, ...): nothing here needs reading to
do it.
"""
