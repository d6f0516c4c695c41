"""The Streamlit classroom app: one module per page (pages/), every figure (charts/), and what the pages share.

Imports: Streamlit and plotly (only here), Captum through resnet_demo.interpret, and the public names of every
layer below; never resnet_demo.cli.
"""
