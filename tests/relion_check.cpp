// faket test harness: read faket's RELION 5 tomography STAR files with RELION's own MetaDataTable
// (src/metadata_table.cpp, compiled from the RELION 5 sources) and make the reads RELION 5's
// TomogramSet::read / TomogramSet::loadTomogram / ParticleSet::read make (src/jaz/tomography), label by
// label. Prints what RELION read ("key value" lines) for the Python test to compare; exit 1 with
// "ERROR ..." on the first problem RELION would report.
//
// usage: relion_check TOMOGRAMS.star [PARTICLES.star ...]
#include "src/metadata_table.h"
#include "src/metadata_label.h"
#include <cstdio>
#include <iostream>
#include <map>
#include <set>
#include <string>
#include <vector>

static void need(const MetaDataTable& t, EMDLabel l, const std::string& where)
{
	if (!t.containsLabel(l))
		REPORT_ERROR(where + ": no " + EMDL::label2Str(l) + " label");
}

template <typename T>
static T get(const MetaDataTable& t, EMDLabel l, long i, const std::string& where)
{
	T v;
	if (!t.getValue(l, v, i))
		REPORT_ERROR(where + ": cannot read " + EMDL::label2Str(l) + " of row " + std::to_string(i));
	return v;
}

static std::string dirname_of(const std::string& f)
{
	size_t p = f.find_last_of('/');
	return p == std::string::npos ? std::string(".") : f.substr(0, p);
}

int main(int argc, char** argv)
{
	if (argc < 2)
	{
		std::cerr << "usage: relion_check TOMOGRAMS.star [PARTICLES.star ...]" << std::endl;
		return 2;
	}
	try
	{
		// --- TomogramSet::read(filename): the global table, then each tilt-series STAR (block = tomo name)
		const std::string fn = argv[1];
		MetaDataTable global;
		global.read(fn, "global");
		const long tc = global.numberOfObjects();
		if (tc == 0) REPORT_ERROR(fn + ": no data_global table with rows");
		need(global, EMDL_TOMO_NAME, fn);
		need(global, EMDL_TOMO_TILT_SERIES_STARFILE, fn);
		// TomogramSet::loadTomogram reads these with getValueSafely (an error when missing)
		need(global, EMDL_TOMO_HANDEDNESS, fn);
		need(global, EMDL_CTF_VOLTAGE, fn);
		need(global, EMDL_CTF_CS, fn);
		need(global, EMDL_CTF_Q0, fn);
		// ParticleSet::read (no optics table yet) and getTiltSeriesPixelSize need the pixel size
		need(global, EMDL_TOMO_TILT_SERIES_PIXEL_SIZE, fn);
		std::cout << "tomograms " << tc << "\n";
		std::set<std::string> names;
		for (long t = 0; t < tc; t++)
		{
			const std::string name = get<std::string>(global, EMDL_TOMO_NAME, t, fn);
			names.insert(name);
			std::string ts = get<std::string>(global, EMDL_TOMO_TILT_SERIES_STARFILE, t, fn);
			std::cout << "tomo " << name << " tilt_series_star " << ts << "\n";
			// RELION opens rlnTomoTiltSeriesStarFile as written (relative to its working directory, the
			// project folder); the test runs this program there.
			MetaDataTable m;
			m.read(ts, name);
			if (m.numberOfObjects() == 0)
				REPORT_ERROR("could not read data from " + ts + ". Does the table have the correct name: data_" + name + "?");
			need(m, EMDL_MICROGRAPH_PRE_EXPOSURE, ts);
			const bool stack = global.containsLabel(EMDL_TOMO_TILT_SERIES_NAME);
			if (!stack) need(m, EMDL_MICROGRAPH_NAME, ts);
			// hasMatrices: rlnTomoYTilt, ZRot, X/YShiftAngst (rlnTomoXTilt optional)
			need(m, EMDL_TOMO_YTILT, ts);
			need(m, EMDL_TOMO_ZROT, ts);
			need(m, EMDL_TOMO_XSHIFT_ANGST, ts);
			need(m, EMDL_TOMO_YSHIFT_ANGST, ts);
			need(m, EMDL_CTF_DEFOCUSU, ts);
			need(m, EMDL_CTF_DEFOCUSV, ts);
			need(m, EMDL_CTF_DEFOCUS_ANGLE, ts);
			int w0 = get<int>(global, EMDL_TOMO_SIZE_X, t, fn);
			int h0 = get<int>(global, EMDL_TOMO_SIZE_Y, t, fn);
			int d0 = get<int>(global, EMDL_TOMO_SIZE_Z, t, fn);
			std::printf("tomo %s size %d %d %d centre %.6f %.6f %.6f\n", name.c_str(), w0, h0, d0,
			            w0 / 2.0, h0 / 2.0, d0 / 2.0);
			std::printf("tomo %s hand %g voltage %g cs %g q0 %g pixel %g binning %g\n", name.c_str(),
			            get<double>(global, EMDL_TOMO_HANDEDNESS, t, fn), get<double>(global, EMDL_CTF_VOLTAGE, t, fn),
			            get<double>(global, EMDL_CTF_CS, t, fn), get<double>(global, EMDL_CTF_Q0, t, fn),
			            get<double>(global, EMDL_TOMO_TILT_SERIES_PIXEL_SIZE, t, fn),
			            get<double>(global, EMDL_TOMO_TOMOGRAM_BINNING, t, fn));
			std::cout << "tomo " << name << " reconstructed "
			          << get<std::string>(global, EMDL_TOMO_RECONSTRUCTED_TOMOGRAM_FILE_NAME, t, fn) << "\n";
			const long fc = m.numberOfObjects();
			std::cout << "tomo " << name << " frames " << fc << "\n";
			for (long f = 0; f < fc; f++)
			{
				double xt = 0.0;
				if (m.containsLabel(EMDL_TOMO_XTILT)) xt = get<double>(m, EMDL_TOMO_XTILT, f, ts);
				std::printf("tilt %s %ld %s ytilt %.6f xtilt %.6f zrot %.6f shift %.6f %.6f dose %.6f defocus %.3f %.3f %.3f\n",
				            name.c_str(), f,
				            stack ? "-" : get<std::string>(m, EMDL_MICROGRAPH_NAME, f, ts).c_str(),
				            get<double>(m, EMDL_TOMO_YTILT, f, ts), xt, get<double>(m, EMDL_TOMO_ZROT, f, ts),
				            get<double>(m, EMDL_TOMO_XSHIFT_ANGST, f, ts), get<double>(m, EMDL_TOMO_YSHIFT_ANGST, f, ts),
				            get<double>(m, EMDL_MICROGRAPH_PRE_EXPOSURE, f, ts),
				            get<double>(m, EMDL_CTF_DEFOCUSU, f, ts), get<double>(m, EMDL_CTF_DEFOCUSV, f, ts),
				            get<double>(m, EMDL_CTF_DEFOCUS_ANGLE, f, ts));
			}
		}
		// --- ParticleSet::read: optics and particles blocks
		for (int a = 2; a < argc; a++)
		{
			const std::string pf = argv[a];
			MetaDataTable opt, part;
			opt.read(pf, "optics");
			part.read(pf, "particles");
			const long pc = part.numberOfObjects();
			if (pc == 0) REPORT_ERROR("ERROR: there are no particles in " + pf);
			if (opt.numberOfObjects() == 0) REPORT_ERROR(pf + ": no data_optics table");
			need(opt, EMDL_TOMO_TILT_SERIES_PIXEL_SIZE, pf + " optics");
			need(opt, EMDL_IMAGE_OPTICS_GROUP, pf + " optics");
			need(part, EMDL_TOMO_NAME, pf);
			need(part, EMDL_TOMO_PARTICLE_NAME, pf);
			need(part, EMDL_IMAGE_OPTICS_GROUP, pf);
			need(part, EMDL_IMAGE_CENT_COORD_X_ANGST, pf);
			need(part, EMDL_IMAGE_CENT_COORD_Y_ANGST, pf);
			need(part, EMDL_IMAGE_CENT_COORD_Z_ANGST, pf);
			std::map<int, double> groups;
			for (long o = 0; o < opt.numberOfObjects(); o++)
				groups[get<int>(opt, EMDL_IMAGE_OPTICS_GROUP, o, pf)] =
					get<double>(opt, EMDL_TOMO_TILT_SERIES_PIXEL_SIZE, o, pf);
			const bool helical = part.containsLabel(EMDL_PARTICLE_HELICAL_TUBE_ID);
			std::cout << "particles " << pf << " " << pc << (helical ? " helical" : "") << "\n";
			for (long p = 0; p < pc; p++)
			{
				const std::string tn = get<std::string>(part, EMDL_TOMO_NAME, p, pf);
				if (names.find(tn) == names.end())
					REPORT_ERROR(pf + ": particle " + std::to_string(p) + " names tomogram '" + tn + "', not in " + fn);
				const int og = get<int>(part, EMDL_IMAGE_OPTICS_GROUP, p, pf);
				if (groups.find(og) == groups.end())
					REPORT_ERROR(pf + ": particle " + std::to_string(p) + " has no optics group " + std::to_string(og));
				std::printf("particle %s %s %.6f %.6f %.6f", tn.c_str(),
				            get<std::string>(part, EMDL_TOMO_PARTICLE_NAME, p, pf).c_str(),
				            get<double>(part, EMDL_IMAGE_CENT_COORD_X_ANGST, p, pf),
				            get<double>(part, EMDL_IMAGE_CENT_COORD_Y_ANGST, p, pf),
				            get<double>(part, EMDL_IMAGE_CENT_COORD_Z_ANGST, p, pf));
				if (helical)
					std::printf(" tube %d track %.6f tiltprior %.6f psiprior %.6f flip %.6f",
					            get<int>(part, EMDL_PARTICLE_HELICAL_TUBE_ID, p, pf),
					            get<double>(part, EMDL_PARTICLE_HELICAL_TRACK_LENGTH_ANGSTROM, p, pf),
					            get<double>(part, EMDL_ORIENT_TILT_PRIOR, p, pf),
					            get<double>(part, EMDL_ORIENT_PSI_PRIOR, p, pf),
					            get<double>(part, EMDL_ORIENT_PSI_PRIOR_FLIP_RATIO, p, pf));
				std::printf("\n");
			}
		}
	}
	catch (RelionError& e)
	{
		std::cout << "ERROR " << e.msg << std::endl;
		return 1;
	}
	std::cout << "OK" << std::endl;
	return 0;
}
