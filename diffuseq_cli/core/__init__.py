"""The self-contained DiffuSeq model: what someone who wants the method's math reads.

* ``layout``: the sequence ``[CLS] x [SEP] [SEP] [CLS] y [SEP]``, source part and target part;
* ``model``: the denoiser f_θ(z_t, t) and the length head;
* ``schedule``: noise schedules (ᾱ_t); ``diffusion``: the forward process, absorbing states, the loss;
* ``timesteps``: which timesteps training draws (loss-aware or uniform);
* ``samplers``: DDIM and DDPM reverse steps; ``sampling``: the reverse process's loop;
* ``rounding``: a z_0 estimate to words; ``remasking``: which words go back to the absorbing state;
* ``seeds``: one recipe for derived seeds.

It imports nothing of the package but the settings (``config``) and ``errors``; files, the
command line and training runs live in the packages above it.
"""
