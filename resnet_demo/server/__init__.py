"""The server's side of training: one background training job per server (jobs), one reading of it per second
shared by every tab (watch), and the queue of the Teach page's fine-tunes (teach_queue).

Imports: the standard library and resnet_demo.base, .nets, .data, .store and .training; never Streamlit.
"""
