// The site map: Leaflet (django-leaflet's copy, served by the site), markers from the JSON of
// the sites' latest bands. The base layer's tile URL is a setting; without one the markers
// sit on a plain grid (CSS), so the map works offline.
(function () {
  "use strict";
  var box = document.getElementById("site-map");
  var status = document.getElementById("site-map-status");
  var legend = document.getElementById("site-map-legend");
  if (!box || typeof L === "undefined") {
    if (status) status.textContent = "The map could not be drawn (its script did not load).";
    return;
  }
  var map = L.map(box, { worldCopyJump: true, preferCanvas: false });
  map.setView([20, 0], 2);
  if (box.dataset.tileUrl) {
    L.tileLayer(box.dataset.tileUrl, {
      maxZoom: 18,
      attribution: box.dataset.tileAttribution || "",
    }).addTo(map);
  }

  function percent(probability) {
    return probability === null ? "no prediction yet" : (probability * 100).toFixed(1) + " %";
  }

  function addLegend(bands) {
    bands.forEach(function (band) {
      var item = document.createElement("li");
      var swatch = document.createElement("span");
      swatch.className = "swatch";
      swatch.style.backgroundColor = band.colour; // CSSOM, which the CSP allows
      item.appendChild(swatch);
      item.appendChild(document.createTextNode(" " + band.name));
      legend.appendChild(item);
    });
  }

  fetch(box.dataset.sitesUrl, { credentials: "same-origin", headers: { Accept: "application/json" } })
    .then(function (response) {
      if (!response.ok) throw new Error("HTTP " + response.status);
      return response.json();
    })
    .then(function (data) {
      var bounds = [];
      data.sites.forEach(function (site) {
        var marker = L.circleMarker([site.latitude, site.longitude], {
          radius: 8,
          color: "#1b2530",
          weight: 1,
          fillColor: site.colour,
          fillOpacity: 0.9,
          className: "site-marker",
        });
        // Text nodes, not HTML: names come from users.
        var label = document.createElement("div");
        var link = document.createElement("a");
        link.href = site.url;
        link.textContent = site.code + " " + site.name;
        label.appendChild(link);
        label.appendChild(document.createElement("br"));
        label.appendChild(
          document.createTextNode((site.risk_band || "") + " " + percent(site.probability))
        );
        marker.bindPopup(label);
        marker.bindTooltip(site.code + ": " + percent(site.probability));
        marker.on("keypress", function () { window.location.href = site.url; });
        marker.addTo(map);
        bounds.push([site.latitude, site.longitude]);
      });
      if (bounds.length) map.fitBounds(bounds, { padding: [24, 24], maxZoom: 12 });
      addLegend(data.bands);
      status.textContent = data.sites.length + " site" + (data.sites.length === 1 ? "" : "s") +
        " with coordinates.";
    })
    .catch(function (error) {
      status.textContent = "The sites could not be loaded (" + error.message + ").";
    });
})();
