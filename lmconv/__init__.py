"""lmconv: Locally Masked Convolution for autoregressive models (Jain thesis ch. 2; UAI 2020).

See lmconv/README.md. Parts: ``orders`` (raster, S-curve, Hilbert, random; 8 symmetric variants),
``masks`` (Algorithm 2), ``layers`` (the LMConv layer, Algorithm 1/4), ``network`` (PixelCNN++-style
U-Net of LMConvs), ``likelihoods`` (binary softmax, discretized logistic mixture), ``model``
(likelihoods, ensembles, completion orders), ``sampling`` (any-order sampling and completion),
``system`` (the LightningModule), ``data`` (digits, MNIST, CIFAR-10, CelebA-HQ).
"""
