"""The discrete VAE benchmark of the RELAX paper (§6.2) on statically binarized MNIST.

Trains a sigmoid-belief-net VAE (``linear1``, ``linear2`` or ``nonlinear``, 200 Bernoulli
latents per stochastic layer) with one gradient estimator per stochastic layer, and reports
the training and validation ELBO, a 100-sample test IWAE bound, each layer's gradient
log-variance and the training speed.

    relax-rl vae --estimator relaxed_rebar --model linear1 --steps 5000 --json
"""
