"""Losses: pure functions (``functional``: the seed's eqs. 2.1–2.4 and the statistics beyond them) and the
parts an objective is made of (``style``: one class per style statistic, selected by name; ``content``)."""

from .content import ContentLoss, TotalVariation
from .functional import (
    content_loss, flatten_maps, gaussian_wasserstein2, gram_matrix, masked_gram, mean_covariance, normalized_gram,
    resample_quantiles, sliced_wasserstein, softmax_transform, sorted_projections, sqrtm_psd, style_layer_loss,
    style_loss, total_loss, total_variation,
)
from .style import (
    STYLE_LOSSES, GramLoss, MeanCovLoss, SlicedWassersteinLoss, Statistic, StyleLoss, TokenGramLoss,
    concat_statistics, create_style_loss, require_positions,
)
